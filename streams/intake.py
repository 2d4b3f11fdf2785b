"""Producing a workflow's inputs: records the workflow's intake accepted, keyed by run, on the run's partition.

Every way in (``durable produce``, the demo, the HTTP gateway) validates
through :mod:`processors.engine.intake` and writes through
:func:`produce_inputs`, so there is one validation and one keying rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from processors.engine.inputs import Accepted
from processors.engine.workflow import Workflow
from schemas import encode
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics, ensure_topics
from streams.writer import Writer


def input_topic(settings: Settings, wf: Workflow) -> str:
    """The namespaced topic a workflow's inputs are produced to."""
    return Topics(settings.namespace).name(wf.input_topic)


def produce_inputs(settings: Settings, wf: Workflow, inputs: Iterable[Accepted]) -> int:
    """Write accepted inputs keyed by run id to the run's partition; returns how many were acknowledged."""
    topic = input_topic(settings, wf)
    ensure_topics(settings, [topic])
    writer = Writer(settings)
    try:
        for item in inputs:
            writer.send(
                topic,
                encode(wf.input_schema, item.record),
                key=item.run_id,
                partition=partition_for(item.run_id, settings.partitions),
            )
        writer.flush(30)
        return writer.sent
    finally:
        writer.close()
