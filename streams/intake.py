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
from streams.writer import OnDelivery, Writer


def input_topic(settings: Settings, wf: Workflow) -> str:
    """The namespaced topic a workflow's inputs are produced to."""
    return Topics(settings.namespace).name(wf.input_topic)


class InputWriter:
    """A long-lived writer of accepted inputs (the gateway keeps one; :func:`produce_inputs` uses one per call).

    Each input goes to the workflow's input topic, keyed by its run id, on the run's partition; ``on_delivery``
    hears the broker's acknowledgement (or failure) of that one record when :meth:`poll` or :meth:`flush` runs.
    """

    def __init__(self, settings: Settings, wf: Workflow) -> None:
        self.topic = input_topic(settings, wf)
        self._settings = settings
        self._wf = wf
        ensure_topics(settings, [self.topic])
        self._writer = Writer(settings)

    def send(self, item: Accepted, on_delivery: OnDelivery | None = None) -> None:
        """Queue one accepted input."""
        self._writer.send(
            self.topic,
            encode(self._wf.input_schema, item.record),
            key=item.run_id,
            partition=partition_for(item.run_id, self._settings.partitions),
            on_delivery=on_delivery,
        )

    def poll(self, timeout_s: float = 0) -> None:
        """Serve delivery reports."""
        self._writer.poll(timeout_s)

    def flush(self, timeout_s: float = 30) -> int:
        """Wait for every queued input's acknowledgement (:class:`DeliveryFailed` if one failed); returns how many were sent."""
        self._writer.flush(timeout_s)
        return self._writer.sent

    def close(self) -> None:
        self._writer.close()


def produce_inputs(settings: Settings, wf: Workflow, inputs: Iterable[Accepted]) -> int:
    """Write accepted inputs keyed by run id to the run's partition; returns how many were acknowledged."""
    writer = InputWriter(settings, wf)
    try:
        for item in inputs:
            writer.send(item)
        return writer.flush(30)
    finally:
        writer.close()
