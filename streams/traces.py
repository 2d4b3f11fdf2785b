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


def attributes(span: TraceSpan) -> dict[str, Any]:
    """A span's attributes (empty when they are not a JSON object)."""
    try:
        value = json.loads(span.attributes_json)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tokens_of(attrs: dict[str, Any]) -> int:
    """Input plus output tokens a span's model calls used."""
    return int(attrs.get("gen_ai.usage.input_tokens", 0)) + int(attrs.get("gen_ai.usage.output_tokens", 0))


def cost_of(attrs: dict[str, Any]) -> float:
    return float(attrs.get("durable.cost_usd", 0.0))


def marks(view: RunTrace) -> dict[str, bool]:
    """The evaluator's mark per span name: passed only if every gate on that span passed."""
    found: dict[str, bool] = {}
    for gate in view.evaluation.gates if view.evaluation is not None else ():
        if gate.span:
            found[gate.span] = found.get(gate.span, True) and gate.passed
    return found


@dataclass(frozen=True)
class Totals:
    """A run's trace summed up: its root span, its latency (less queueing for admission), tokens and cost."""

    root: TraceSpan | None
    latency_ms: float
    queued_ms: float
    tokens: int
    cost_usd: float


def totals(view: RunTrace) -> Totals:
    """What `durable trace` and the gateway print under the spans."""
    ids = {s.span_id for s in view.spans}
    roots = [s for s in view.spans if s.parent_span_id not in ids]
    first_root = min(roots, key=lambda s: (s.start_unix_nano, s.name)) if roots else None
    root = next((s for s in view.spans if s.name == "orchestrator.run"), first_root)
    t0 = min((s.start_unix_nano for s in view.spans), default=0)
    t_end = max((s.end_unix_nano for s in view.spans), default=0)
    queued_ms = float(attributes(root).get("durable.queued_ms", 0)) if root is not None else 0.0
    whole_ms = (root.end_unix_nano - root.start_unix_nano if root is not None else t_end - t0) / 1e6
    spans = [attributes(s) for s in view.spans]
    return Totals(
        root=root,
        latency_ms=whole_ms - queued_ms,
        queued_ms=queued_ms,
        tokens=sum(tokens_of(a) for a in spans),
        cost_usd=sum(cost_of(a) for a in spans),
    )
