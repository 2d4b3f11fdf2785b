"""A run's trace as `durable trace` and the console show it: its spans, its evaluation, its output.

Spans come from the namespace's traces topic (keyed by run id); the
evaluation from the journal (the output of the workflow's judging step, read
by that step's ``evaluation``); the output (e.g. a decision) from the
workflow's output topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from processors.engine.evaluation import Evaluation
from processors.engine.workflow import Workflow
from schemas import DecodeError, decode, from_bytes
from schemas.models import JournalEvent, JournalKind, TraceSpan
from streams.config import Settings
from streams.reading import keyed
from streams.topics import Topics


@dataclass(frozen=True)
class RunTrace:
    """What `durable trace` shows of one run."""

    run_id: str
    spans: list[TraceSpan]
    evaluation: Evaluation | None
    output: dict[str, Any] | None


def _partition_records(settings: Settings, topic: str, run_id: str) -> list[bytes]:
    return [msg.value() or b"" for msg in keyed(settings, topic, {run_id})]


def workflow_of(settings: Settings, run_id: str) -> str | None:
    """The name of the workflow a run belongs to (from its journal), or None."""
    for value in _partition_records(settings, Topics(settings.namespace).journal, run_id):
        try:
            return from_bytes(value, JournalEvent).workflow
        except DecodeError:
            continue
    return None


def load(settings: Settings, run_id: str, wf: Workflow) -> RunTrace:
    """Everything the namespace holds about one run's trace."""
    topics = Topics(settings.namespace)
    spans: dict[str, TraceSpan] = {}
    for value in _partition_records(settings, topics.traces, run_id):
        try:
            span = from_bytes(value, TraceSpan)
        except DecodeError:
            continue
        spans[span.span_id] = span
    judges = {s.name: s.evaluation for s in wf.steps if s.evaluation is not None}
    evaluation = None
    for value in _partition_records(settings, topics.journal, run_id):
        try:
            event = from_bytes(value, JournalEvent)
        except DecodeError:
            continue
        judge = judges.get(event.step or "")
        if event.kind is JournalKind.STEP_SUCCEEDED and judge is not None and event.detail_json:
            evaluation = judge(json.loads(event.detail_json))
    output = None
    for value in _partition_records(settings, topics.name(wf.output_topic), run_id):
        try:
            _, output = decode(value)
        except DecodeError:
            continue
    return RunTrace(run_id, sorted(spans.values(), key=lambda s: s.start_unix_nano), evaluation, output)
