"""`durable produce` and `durable consume`: a workflow's inputs in from a file, its outputs out as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from processors import pii
from processors.engine.canonical import canonical_json
from processors.engine.inputs import Accepted, Rejected, parse_lines
from processors.engine.status import run_status
from schemas.models import JournalEvent, JournalKind
from streams.cli.common import NamespaceOpt, WorkflowOpt, err, fail, settings, workflow_named, workflows
from streams.intake import input_topic, produce_inputs
from streams.journal import runs_of
from streams.reading import dumps, follow
from streams.topics import Topics


def produce(
    workflow_name: Annotated[str, typer.Argument(metavar="WORKFLOW", help="The workflow whose inputs these are.")],
    file: Annotated[str, typer.Argument(help="JSON-lines file of inputs, or - for stdin.")],
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Validate every line through the workflow's intake (personal data tokenised), produce the good lines.

    Bad lines are reported with their number and reason and are not produced.
    A line for a run that exists already (or for the same run as an earlier
    line) is a duplicate when its content is the same (acknowledged, not
    produced again) and a conflict when it is not (reported, not produced).
    Exit 1 if any line was bad or conflicting.
    """
    wf = workflow_named(workflow_name, workflow)
    try:
        pii.require_explicit_key()  # tokenising happens here, so production mode needs its key here too
    except pii.PiiKeyError as exc:
        raise fail(f"refusing to produce: {exc}", 2) from None
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8", errors="replace")  # noqa: SIM115
    with stream:
        parsed = list(parse_lines(wf, stream))
    good = [p for p in parsed if isinstance(p, Accepted)]
    bad = [p for p in parsed if isinstance(p, Rejected)]
    s = settings(namespace) if good else None
    existing = runs_of(s, {g.run_id for g in good}) if s is not None else {}
    first: dict[str, Accepted] = {}
    to_produce: list[Accepted] = []
    for g in good:
        earlier = first.setdefault(g.run_id, g)
        started = existing.get(g.run_id)
        if started and started[0].kind is JournalKind.RUN_STARTED:
            was, where = json.loads(started[0].detail_json or "{}"), f"run {g.run_id} ({_status(started)})"
        elif earlier is not g:
            was, where = earlier.record, f"line {earlier.line_no} (run {g.run_id})"
        else:
            to_produce.append(g)
            continue
        if canonical_json(was) == canonical_json(g.record):
            _say(f"line {g.line_no}: duplicate of {where}: same content, not produced again")
        else:
            differs = ", ".join(sorted(k for k in set(was) | set(g.record) if was.get(k) != g.record.get(k)))
            bad.append(Rejected(g.line_no, f"conflicts with {where}: same run, other content ({differs}); not produced"))
    for b in sorted(bad, key=lambda b: b.line_no):
        _say(f"line {b.line_no}: {b.reason}")
    if to_produce and s is not None:
        produce_inputs(s, wf, to_produce)
        _say(f"produced {len(to_produce)} input(s) to {input_topic(s, wf)}")
    if bad:
        raise fail(f"{len(bad)} line(s) not produced: bad or conflicting")


def _say(text: str) -> None:
    """User data on stderr as plain text: never parsed as markup."""
    err.print(text, markup=False, highlight=False)


def _status(events: list[JournalEvent]) -> str:
    state = run_status(events)
    return state.value if state is not None else "UNKNOWN"


def consume(
    what: Annotated[
        str | None,
        typer.Argument(metavar="[OUTPUT]", help="An output topic (e.g. decisions) or a workflow name (default: the first's)."),
    ] = None,
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest output.")] = False,
    group: Annotated[str | None, typer.Option(help="Consumer group: resume where it left off.")] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new outputs.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Exit after S seconds without a new output.")] = None,
) -> None:
    """Print a workflow's outputs (e.g. routed decisions), one JSON object per line, each output once."""
    loaded = workflows(workflow)
    by_topic = {wf.output_topic: wf for wf in loaded}
    by_name = {wf.name: wf for wf in loaded}
    if what is None:
        logical = loaded[0].output_topic
    elif what in by_name:
        logical = by_name[what].output_topic
    elif what in by_topic:
        logical = what
    else:
        raise fail(f"{what!r} is neither an output topic {sorted(by_topic)} nor a workflow {sorted(by_name)}", 2)
    s = settings(namespace)
    seen: set[str] = set()
    for rec in follow(
        s,
        Topics(s.namespace).name(logical),
        group=group,
        from_beginning=from_beginning or (not group and not follow_),
        idle_timeout_s=timeout,
        follow_forever=follow_,
    ):
        output_id = rec.output_id or f"{rec.partition}:{rec.offset}"
        if output_id in seen:
            continue  # downstream sees each output once even if a record repeats
        seen.add(output_id)
        print(dumps(rec.value), flush=True)
