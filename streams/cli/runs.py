"""`durable status RUN_ID`, `durable runs export|list|compensate`: a run as its journal tells it, runs by version, and an operator's undo."""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from processors.engine.replay import RecordedRun, recorded_run
from streams import operator, retention, runlist
from streams.cli.common import NamespaceOpt, err, fail, out, settings
from streams.config import Settings
from streams.journal import run_journal
from streams.runview import view

runs_app = typer.Typer(help="Runs: export what a run captured.", no_args_is_help=True)


def status(run_id: str, namespace: NamespaceOpt = None) -> None:
    """A run's state and step timeline, read from its journal."""
    s = settings(namespace)
    run = view(run_journal(s, run_id))
    expired = retention.lookup(s, run_id)
    if run is None:
        if expired is not None:  # its journal is gone too (the journal topic's retention): the marker says what was
            out.print(retention.describe(expired, run_id), highlight=False)
            out.print("state: [bold]EXPIRED[/bold]")
            return
        raise fail(f"no run {run_id} in namespace {s.namespace}")
    events = run.events
    t0 = run.started_ms
    table = Table(title=f"run {run_id}")
    for col in ("seq", "+ms", "event", "step", "attempt"):
        table.add_column(col)
    for e in events:
        table.add_row(
            str(e.seq), str(e.at_ms - t0), e.kind.value, e.step or "", "" if e.attempt is None else str(e.attempt)
        )
    out.print(table)
    started = datetime.fromtimestamp(t0 / 1000, UTC).isoformat(timespec="milliseconds")
    out.print(f"state: [bold]{run.status_name}[/bold]  started {started}  last event +{events[-1].at_ms - t0} ms")
    out.print(f"workflow {escape(run.workflow)} version [bold]{escape(run.version or runlist.UNVERSIONED)}[/bold]")
    if expired is not None:
        out.print(f"{retention.describe(expired, run_id)}; its journal above is kept longer", highlight=False)


def recorded(s: Settings, run_id: str) -> RecordedRun:
    """A run's captured inputs and outcomes, from its journal (exit 2 if there is no such run).

    A run that expired from the run table (streams.retention) is said to have, on stderr; its journal,
    kept longer, is still what is replayed or exported, and without it the exit is 2.
    """
    events = run_journal(s, run_id)
    expired = retention.lookup(s, run_id)
    if expired is not None:
        err.print(retention.describe(expired, run_id), highlight=False)
    if not events:
        if expired is not None:
            raise fail(f"run {run_id} expired and its journal is gone too (the journal topic's retention)", 2)
        raise fail(f"no run {run_id} in namespace {s.namespace}", 2)
    return recorded_run(events)


@runs_app.command("export")
def runs_export(
    run_id: str,
    namespace: NamespaceOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """Write what a run captured (inputs, outputs, errors, outside values) as JSON, to attach to a bug.

    `durable replay --file FILE` replays it without a broker.
    """
    text = recorded(settings(namespace), run_id).to_json()
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        err.print(f"wrote {output}", markup=False)


@runs_app.command("list")
def runs_list(
    namespace: NamespaceOpt = None,
    version: Annotated[str | None, typer.Option(help="Only runs started on this workflow version.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status (RUNNING, COMPLETED, ...).")] = None,
    blocked: Annotated[
        bool, typer.Option("--blocked", help="Only runs waiting for a version no owning worker has loaded.")
    ] = False,
) -> None:
    """How many runs there are per workflow version and status, from the run changelog.

    A version can be removed from the workers once it has no RUNNING, COMPENSATING or PAUSED run. With --blocked,
    every blocked run is listed with the version it waits for.
    """
    runs = runlist.select(runlist.latest_states(settings(namespace)), version, status, blocked)
    table = Table(title=f"runs in namespace {settings(namespace).namespace}")
    for col in ("workflow", "version", "status", "runs"):
        table.add_column(col, justify="right" if col == "runs" else "left")
    for (workflow, v, st), n in sorted(runlist.counts(runs).items()):
        table.add_row(escape(workflow), escape(v), st, str(n))
    out.print(table)
    if blocked:
        for r in sorted(runs, key=lambda r: r.run_id):
            out.print(
                f"{escape(r.run_id)} blocked ({r.parked} record(s) parked): {escape(r.blocked or '')}", highlight=False
            )


@runs_app.command("compensate")
def runs_compensate(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why: recorded in the run's journal with who asked.")],
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option(help="Wait up to S seconds for the worker to apply it.")] = 30.0,
) -> None:
    """Undo a PAUSED run on an operator's word: its completed steps' compensations run, newest first.

    A run pauses when a step whose retry policy says ``on_exhausted="pause"`` runs out of attempts
    (`durable dlq redrive` of its letter resumes it instead). Idempotent: a run already compensating or
    compensated on such a request is reported and left alone (exit 0). Exit 1 when the run is not paused
    or the worker did not apply it in time, 2 when there is no such run or its state expired.
    """
    _operator_request(settings(namespace), run_id, "compensate", reason, timeout)


@runs_app.command("rollback")
def runs_rollback(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why: recorded in the run's journal and its retracting decision.")],
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option(help="Wait up to S seconds for the worker to apply it.")] = 30.0,
) -> None:
    """Undo a COMPLETED run on an operator's word: its steps' compensations run newest first, its decision is retracted.

    The run then writes a new signed output that the workflow builds (``on_failure`` with ``retracted_by`` set), e.g. a
    decision with status RETRACTED, the reason and what was undone. Idempotent: a run already rolled back on such a
    request is reported and left alone (exit 0). Exit 1 when the run is not COMPLETED or the worker did not apply it in
    time, 2 when there is no such run or its state expired. Who asked is recorded (the local user name), as for redrive.
    """
    _operator_request(settings(namespace), run_id, "rollback", reason, timeout)


def _operator_request(s: Settings, run_id: str, action: operator.Action, reason: str, timeout: float) -> None:
    """Send an operator's ``action`` (:mod:`streams.operator`) and wait until the run's journal shows it applied.

    Exit 2 for an unknown run or one whose state expired (streams.retention), 1 for a run in another status or a
    request not applied within ``timeout``; a request already applied is reported and left alone.
    """
    request = operator.check(s, run_journal(s, run_id), action, reason, getpass.getuser())
    if request is None:
        raise fail(f"no run {run_id} in namespace {s.namespace}", 2)
    if request.already:
        out.print(f"run {escape(run_id)}: {request.word.already}", highlight=False)
        return
    if not request.applies:
        raise fail(request.why_not, 2 if request.expired is not None else 1)
    operator.send(s, request)
    deadline = time.monotonic() + timeout
    while not operator.applied(run_journal(s, run_id), request.control):
        if time.monotonic() >= deadline:
            raise fail(f"run {run_id}: requested, not applied within {timeout:.0f}s (is a worker running?)", 1)
        time.sleep(0.2)  # polling the run's journal, bounded by --timeout
    out.print(f"run {escape(run_id)}: {request.word.done}; `durable status {escape(run_id)}` follows it", highlight=False)
