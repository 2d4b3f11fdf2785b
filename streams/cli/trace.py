"""`durable trace RUN_ID`: a run's spans drawn in the terminal, with its totals and output.

One row per span (indented under its parent): start offset from the run's
start, a bar for its duration, tokens, cost and the evaluator's mark on it;
then latency against budget, tokens, cost against budget, evals passed and
the workflow's one-line description of the output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from schemas.models import TraceSpan
from streams import traces
from streams.cli.common import NamespaceOpt, WorkflowOpt, fail, out, settings, workflow_named
from streams.traces import RunTrace

BAR = 32


def trace(run_id: str, namespace: NamespaceOpt = None, workflow: WorkflowOpt = None) -> None:
    """Draw a run's trace: one row per span with its start, a duration bar, tokens, cost, eval; then the totals."""
    s = settings(namespace)
    name = traces.workflow_of(s, run_id)
    if name is None:
        raise fail(f"no run {run_id} in namespace {s.namespace}")
    wf = workflow_named(name, workflow)
    view = traces.load(s, run_id, wf)
    if not view.spans:
        raise fail(f"no spans of run {run_id} in namespace {s.namespace} (is the run finished?)")
    table, lines = render(view, wf.describe)
    out.print(table)
    for line in lines:
        out.print(line)


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


def render(view: RunTrace, describe: Callable[[Mapping[str, Any]], str]) -> tuple[Table, list[Text]]:
    """The span table and the summary lines (``describe``: the workflow's one line for its output)."""
    rows = _ordered(view.spans)
    summed = traces.totals(view)
    root = summed.root
    t0 = min((s.start_unix_nano for s in view.spans), default=0)
    t_end = max((s.end_unix_nano for s in view.spans), default=0)
    total_ms = (t_end - t0) / 1e6
    gates = view.evaluation.gates if view.evaluation is not None else ()
    marks = traces.marks(view)
    table = Table(title=f"trace of {view.run_id}" + (f"  (trace id {root.trace_id})" if root else ""))
    for col, justify in (("span", "left"), ("start", "right"), ("duration", "left"), ("ms", "right"),
                         ("tokens", "right"), ("cost", "right"), ("eval", "center")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for depth, span in rows:
        attrs = traces.attributes(span)
        start_ms = (span.start_unix_nano - t0) / 1e6
        length_ms = (span.end_unix_nano - span.start_unix_nano) / 1e6
        span_tokens = traces.tokens_of(attrs)
        span_cost = traces.cost_of(attrs)
        mark = ("✓" if marks[span.name] else "✗") if span.name in marks else ""
        if span.status == "ERROR":
            mark = (mark + " error").strip()
        attempt = attrs.get("durable.attempt")
        label = "  " * depth + span.name + (f" #{attempt}" if attempt and attempt != 1 else "")
        table.add_row(
            Text(label),
            f"+{start_ms:,.0f} ms",
            _bar(start_ms, length_ms, total_ms),
            f"{length_ms:,.0f}",
            f"{span_tokens:,}" if span_tokens else "",
            f"${span_cost:.4f}" if span_cost else "",
            mark,
        )
    evaluation = view.evaluation
    summary = f"latency {summed.latency_ms / 1000:.2f} s"
    if summed.queued_ms:
        summary += f" (after {summed.queued_ms / 1000:.2f} s queued for admission)"
    if evaluation is not None and evaluation.latency_budget_ms is not None:
        summary += f" / {evaluation.latency_budget_ms / 1000:.2f} s budget"
    summary += f" · tokens {summed.tokens:,} · cost ${summed.cost_usd:.4f}"
    if evaluation is not None and evaluation.cost_budget_usd is not None:
        summary += f" / ${evaluation.cost_budget_usd:.3f} budget"
    if gates:
        summary += f" · evals {sum(1 for g in gates if g.passed)}/{len(gates)}"
    lines = [Text(summary)]
    if view.output is not None:
        lines.append(Text(describe(view.output), style="bold"))
    return table, lines
