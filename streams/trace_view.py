"""`durable trace RUN_ID`: a run's spans drawn in the terminal, with its totals and decision.

One row per span (indented under its parent): start offset from the run's
start, a bar for its duration, tokens, cost and the evaluator's mark on it;
then latency against budget, tokens, cost against budget, evals passed and
the decision line. Spans come from the namespace's traces topic; the
evaluator's gates and budgets from the run's journal; the decision from the
decisions topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition
from rich.table import Table
from rich.text import Text

from schemas import DecodeError, decode, from_bytes
from schemas.models import JournalEvent, JournalKind, TraceSpan
from streams.config import Settings
from streams.kafka import partition_for, read_to_end, reader
from streams.topics import Topics

BAR = 32
DEFAULT_LATENCY_BUDGET_MS = 3000.0
DEFAULT_COST_BUDGET_USD = 0.025
CURRENCY = {"GBP": "£", "USD": "$", "EUR": "€"}


@dataclass(frozen=True)
class RunTrace:
    """What `durable trace` shows of one run."""

    run_id: str
    spans: list[TraceSpan]
    evaluation: dict[str, Any] | None
    decision: dict[str, Any] | None


def _partition_records(settings: Settings, topic: str, run_id: str) -> list[bytes]:
    c = reader(settings)
    try:
        p = partition_for(run_id, settings.partitions)
        meta = c.list_topics(timeout=10).topics.get(topic)
        if meta is None:
            return []
        return [
            msg.value() or b""
            for msg in read_to_end(c, [TopicPartition(topic, p, 0)])
            if (msg.key() or b"").decode() == run_id
        ]
    finally:
        c.close()


def load(settings: Settings, run_id: str, decisions_topic: str) -> RunTrace:
    topics = Topics(settings.namespace)
    spans: dict[str, TraceSpan] = {}
    for value in _partition_records(settings, topics.traces, run_id):
        try:
            span = from_bytes(value, TraceSpan)
        except DecodeError:
            continue
        spans[span.span_id] = span
    evaluation = None
    for value in _partition_records(settings, topics.journal, run_id):
        try:
            event = from_bytes(value, JournalEvent)
        except DecodeError:
            continue
        if event.kind is JournalKind.STEP_SUCCEEDED and event.detail_json and '"gates"' in event.detail_json:
            evaluation = json.loads(event.detail_json)
    decision = None
    for value in _partition_records(settings, decisions_topic, run_id):
        try:
            _, decision = decode(value)
        except DecodeError:
            continue
    return RunTrace(run_id, sorted(spans.values(), key=lambda s: s.start_unix_nano), evaluation, decision)


def _attrs(span: TraceSpan) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(span.attributes_json)
    return value


def _ordered(spans: list[TraceSpan]) -> list[tuple[int, TraceSpan]]:
    """Depth-first by start time, each span under its parent; spans whose parent is missing are roots."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[TraceSpan]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else None
        children.setdefault(parent, []).append(s)
    out: list[tuple[int, TraceSpan]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: (x.start_unix_nano, x.name)):
            out.append((depth, s))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return out


def _bar(start: float, length: float, total: float) -> str:
    if total <= 0:
        return ""
    left = round(start / total * BAR)
    width = max(1, round(length / total * BAR))
    return " " * min(left, BAR - 1) + "█" * min(width, BAR - min(left, BAR - 1))


def render(view: RunTrace) -> tuple[Table, list[Text]]:
    """The span table and the summary lines."""
    rows = _ordered(view.spans)
    root = next((s for _, s in rows if s.name == "orchestrator.run"), rows[0][1] if rows else None)
    t0 = min((s.start_unix_nano for s in view.spans), default=0)
    t_end = max((s.end_unix_nano for s in view.spans), default=0)
    total_ms = (t_end - t0) / 1e6
    gates = (view.evaluation or {}).get("gates", [])
    marks: dict[str, bool] = {}
    for gate in gates:
        name = gate.get("span")
        if name:
            marks[name] = marks.get(name, True) and bool(gate.get("passed"))
    table = Table(title=f"trace of {view.run_id}" + (f"  (trace id {root.trace_id})" if root else ""))
    for col, justify in (("span", "left"), ("start", "right"), ("duration", "left"), ("ms", "right"),
                         ("tokens", "right"), ("cost", "right"), ("eval", "center")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    tokens = 0
    cost = 0.0
    for depth, span in rows:
        attrs = _attrs(span)
        start_ms = (span.start_unix_nano - t0) / 1e6
        length_ms = (span.end_unix_nano - span.start_unix_nano) / 1e6
        span_tokens = int(attrs.get("gen_ai.usage.input_tokens", 0)) + int(attrs.get("gen_ai.usage.output_tokens", 0))
        span_cost = float(attrs.get("durable.cost_usd", 0.0))
        tokens += span_tokens
        cost += span_cost
        mark = ("✓" if marks[span.name] else "✗") if span.name in marks else ""
        if span.status == "ERROR":
            mark = (mark + " error").strip()
        attempt = attrs.get("durable.attempt")
        label = "  " * depth + span.name + (f" #{attempt}" if attempt and attempt != 1 else "")
        table.add_row(
            label,
            f"+{start_ms:,.0f} ms",
            _bar(start_ms, length_ms, total_ms),
            f"{length_ms:,.0f}",
            f"{span_tokens:,}" if span_tokens else "",
            f"${span_cost:.4f}" if span_cost else "",
            mark,
        )
    budget = (view.evaluation or {}).get("budget", {})
    latency_budget = float(budget.get("latency_budget_ms", DEFAULT_LATENCY_BUDGET_MS))
    cost_budget = float(budget.get("cost_budget_usd", DEFAULT_COST_BUDGET_USD))
    run_ms = (root.end_unix_nano - root.start_unix_nano) / 1e6 if root else total_ms
    lines = [
        Text(
            f"latency {run_ms / 1000:.2f} s / {latency_budget / 1000:.2f} s budget · tokens {tokens:,} · "
            f"cost ${cost:.4f} / ${cost_budget:.3f} budget"
            + (f" · evals {sum(1 for g in gates if g.get('passed'))}/{len(gates)}" if gates else "")
        )
    ]
    if view.decision is not None:
        d = view.decision
        symbol = CURRENCY.get(str(d.get("currency")), f"{d.get('currency')} ")
        line = f"{d.get('status')} · reserve {symbol}{float(d.get('reserve', 0)):,.0f} · {d.get('queue')}"
        if d.get("status") != "ROUTED" and d.get("reasons"):
            line += f" · {'; '.join(d['reasons'])}"
        lines.append(Text(line, style="bold"))
    return table, lines
