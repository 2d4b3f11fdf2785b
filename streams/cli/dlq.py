"""`durable dlq list | show | redrive`: dead letters as operators handle them."""

from __future__ import annotations

import getpass
import json
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from schemas import DecodeError, decode
from streams import authentication, deadletters
from streams.cli.common import NamespaceOpt, WorkflowOpt, fail, out, settings, workflows
from streams.reading import dumps
from streams.topics import Topics

dlq_app = typer.Typer(help="Dead letters: list them, show one, redrive runs from them.", no_args_is_help=True)


def _hold_secret() -> None:
    """Redrives are signed, and a letter's status counts only signed ones: every dlq command needs the secret."""
    try:
        authentication.verifying_secrets()
    except authentication.WorkerSecretError as exc:
        raise fail(str(exc), 2) from None


def _age(at_ms: int) -> str:
    seconds = max(0.0, time.time() - at_ms / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dlq_app.command("list")
def dlq_list(
    namespace: NamespaceOpt = None,
    step: Annotated[str | None, typer.Option(help="Only letters of this step.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Hide letters already redriven.")] = False,
) -> None:
    """A table of dead letters: id, run, step, error, attempts, age, status."""
    s = settings(namespace)
    _hold_secret()
    entries = [
        e
        for e in deadletters.letters(s)
        if (step is None or e.letter.step == step) and not (open_only and e.redrive is not None)
    ]
    table = Table(title=f"dead letters in {s.namespace}")
    for col in ("id", "kind", "run", "step", "error", "attempts", "age", "status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        attempts = len(json.loads(e.letter.attempts_json)) if e.letter.attempts_json else None
        # Cells are Text, never markup: ids and errors come from whatever was written to the topics.
        table.add_row(
            *[
                _text(v)
                for v in (
                    e.letter.dead_letter_id,
                    e.letter.kind,
                    e.letter.run_id or "-",
                    e.letter.step or "-",
                    e.letter.error_type,
                    "-" if attempts is None else str(attempts),
                    _age(e.letter.at_ms),
                    e.status,
                )
            ]
        )
    out.print(table)
    out.print(f"{len(entries)} dead letter(s)", highlight=False)


def _text(value: str) -> Text:
    return Text(value)


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `durable dlq list`).")],
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
    input_only: Annotated[
        bool, typer.Option("--input", help="Print only the step input as JSON (to replay it, or attach to a bug).")
    ] = False,
) -> None:
    """Everything about one dead letter: why, where from, every attempt with its traceback, the input."""
    s = settings(namespace)
    _hold_secret()
    entry = deadletters.find(s, letter_id)
    if entry is None:
        raise fail(f"no dead letter {letter_id} in namespace {s.namespace}")
    letter = entry.letter
    if input_only:
        if letter.input_json is not None:
            print(json.dumps(json.loads(letter.input_json), indent=2, sort_keys=True))
            return
        workflows(workflow)  # their schemas, to decode the record the letter holds
        try:
            _, record = decode(letter.payload)
        except DecodeError as exc:
            raise fail(f"{letter_id} holds an undecodable record ({exc}); its raw bytes are in `dlq show`") from None
        print(dumps(record))
        return
    shown = deadletters.shown(entry)
    print(json.dumps(shown, indent=2, sort_keys=False, default=str))


@dlq_app.command("redrive")
def dlq_redrive(
    letter_id: Annotated[str | None, typer.Argument(help="The dead letter to redrive.")] = None,
    namespace: NamespaceOpt = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Redrive every open step, compensation (and e.g. delivery) letter.")
    ] = False,
    step: Annotated[str | None, typer.Option(help="With --all: only letters of this step.")] = None,
    timeout: Annotated[float, typer.Option(help="Wait up to S seconds for the worker to apply each redrive.")] = 30.0,
) -> None:
    """Resume runs at their dead-lettered step with a fresh retry budget (or re-queue a sink's delivery).

    Idempotent: a letter already redriven is reported and left alone, and the
    orchestrator ignores a repeated request. Exit 0 when every selected
    letter is (or already was) redriven, 1 when one was not applied in time
    or its run has not stopped, 2 when a letter cannot be redriven (its run expired:
    ``DURABLE_RUN_RETENTION_S``) or the
    worker secret is missing. The request is signed with the worker secret
    and records the OS user running this command as ``requested_by``.
    Letters of kinds an installed connector registers (``delivery``: the
    webhook sink's) go to that connector, which re-queues the work with a
    fresh budget; the command waits until it says it has.
    """
    if (letter_id is None) == (not all_):
        raise fail("give a dead letter id, or --all", 2)
    s = settings(namespace)
    _hold_secret()
    entries = deadletters.letters(s)
    if letter_id is not None:
        chosen = [e for e in entries if e.letter.dead_letter_id == letter_id]
        if not chosen:
            raise fail(f"no dead letter {letter_id} in namespace {s.namespace}")
    else:
        kinds = deadletters.redrivable_kinds()
        chosen = [
            e
            for e in entries
            if e.letter.kind in kinds
            and (step is None or e.letter.step == step)
            and (e.letter.kind in deadletters.RUN_KINDS or e.redrive is None)
        ]
    by = getpass.getuser()
    to_send: list[deadletters.Request] = []
    code = 0
    for e in chosen:
        letter = e.letter
        try:
            check = deadletters.check_redrive(s, e, by)
        except deadletters.NotRedrivable as exc:
            raise fail(str(exc), 2) from None
        control = check.control
        if check.already:
            out.print(f"{letter.dead_letter_id}: already redriven", markup=False, highlight=False)
            continue
        if not check.stopped:
            shown = check.status.value if check.status else "UNKNOWN"
            out.print(
                f"{letter.dead_letter_id}: run {control.run_id} is {shown}; redrive it once it has stopped",
                markup=False,
            )
            code = 1
            continue
        if check.expired is not None:  # its state left the run table: the orchestrator would ignore the request
            out.print(f"{letter.dead_letter_id}: {check.expired}; cannot redrive it", markup=False)
            code = 2
            continue
        to_send.append(check.request)
    deadletters.request_redrives(s, to_send)
    deadline = time.monotonic() + timeout
    for request in to_send:
        control = request.control
        while not deadletters.applied(s, request) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the run's journal (or the letter owner's state), bounded by --timeout
        if not deadletters.applied(s, request):
            out.print(
                f"{control.dead_letter_id}: requested, not applied within {timeout:.0f}s (is a worker running?)",
                markup=False,
            )
            code = 1
        elif request.topic != Topics(s.namespace).control:
            out.print(f"{control.dead_letter_id}: redriven, its {request.topic} consumer re-queued it", markup=False)
        else:
            out.print(
                f"{control.dead_letter_id}: redriven, run {control.run_id} resumes at {control.step}", markup=False
            )
    raise typer.Exit(code)
