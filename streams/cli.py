"""The ``durable`` command line."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.sources.fnol import BadLine, GoodLine, parse_lines
from processors.engine.replay import RecordedAttempt, RecordedRun, RunReplay, recorded_run, replay_attempt, replay_run
from processors.engine.workflow import Workflow
from processors.fnol.workflow import DECISIONS_TOPIC, INPUT_TOPIC
from processors.models import client_from_env
from schemas import DecodeError, decode, to_bytes
from schemas.models import JournalEvent, JournalKind
from streams import discovery, dlq, offsets, trace_view
from streams.broker import BrokerStartError, EmbeddedBroker
from streams.config import Settings
from streams.io import dumps, follow, produce_reports, run_journal
from streams.io import journals as io_journals
from streams.kafka import partition_for
from streams.kafka import producer as kafka_producer
from streams.offsets import ResetSpec
from streams.sandbox import SandboxIsProduction, replay_window
from streams.topics import Topics, ensure_topics
from streams.worker import DEFAULT_WORKFLOWS, Role, Worker, WorkflowNotFound, load_workflows

app = typer.Typer(help="Durable execution on Kafka: FNOL claims sagas that survive restarts.", no_args_is_help=True)
produce_app = typer.Typer(help="Produce records onto the engine's input topics.", no_args_is_help=True)
consume_app = typer.Typer(help="Read the engine's output topics.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, show one, redrive runs from them.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs: export what a run captured.", no_args_is_help=True)
offsets_app = typer.Typer(help="Consumer-group offsets: reset them to replay (or skip) records.", no_args_is_help=True)
app.add_typer(produce_app, name="produce")
app.add_typer(consume_app, name="consume")
app.add_typer(dlq_app, name="dlq")
app.add_typer(runs_app, name="runs")
app.add_typer(offsets_app, name="offsets")

err = Console(stderr=True)
# Piped output (scripts, tests) gets whole lines, not a table folded to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 240)

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Topic namespace (default: $DURABLE_NAMESPACE or 'main').")
]
SAMPLES = Path(__file__).resolve().parent.parent / "connectors" / "samples" / "fnol.jsonl"


def _settings(namespace: str | None, **extra: object) -> Settings:
    try:
        bootstrap = discovery.bootstrap_servers()
    except discovery.NoBroker as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return Settings.from_env(namespace=namespace, bootstrap_servers=bootstrap, **extra)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def broker(port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0) -> None:
    """Run the embedded broker (Tansu, in memory) in the foreground."""
    try:
        b = EmbeddedBroker(port=port).start()
    except BrokerStartError as exc:
        err.print(f"[red]broker did not start: {exc}[/red]")
        raise typer.Exit(1) from None
    discovery.record(b)
    print(f"KAFKA_BOOTSTRAP_SERVERS={b.bootstrap_servers}", flush=True)
    err.print("embedded broker up (memory storage: a broker restart loses its data). Ctrl-C to stop.")
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if b.exited:
                err.print("[red]broker exited[/red]")
                raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        discovery.forget(b)
        b.stop()


@app.command()
def worker(
    namespace: NamespaceOpt = None,
    name: Annotated[str | None, typer.Option(help="Worker name: its state directory. Unique per host.")] = None,
    role: Annotated[Role, typer.Option(help="Run the orchestrator, the executor, or both.")] = Role.ALL,
    workflow: Annotated[list[str] | None, typer.Option(help="Workflow to load, module:attribute.")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="Where RocksDB state lives.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one worker until SIGTERM or Ctrl-C. Several may run."""
    _logging(verbose)
    settings = _settings(namespace, worker_name=name or "worker", state_dir=state_dir)
    w = Worker(settings, load_workflows(workflow or DEFAULT_WORKFLOWS), role)
    err.print(
        f"worker {settings.worker_name} ({role.value}) on {settings.bootstrap_servers}, namespace {settings.namespace}"
    )
    raise typer.Exit(w.run_forever())


@produce_app.command("fnol")
def produce_fnol(
    file: Annotated[str, typer.Argument(help="JSON-lines file of FNOL reports, or - for stdin.")],
    namespace: NamespaceOpt = None,
) -> None:
    """Validate every line, tokenise personal data, produce the good lines.

    Bad lines are reported with their number and reason and are not produced;
    the exit code is 1 if any line was bad.
    """
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8", errors="replace")  # noqa: SIM115
    with stream:
        parsed = list(parse_lines(stream))
    good = [p for p in parsed if isinstance(p, GoodLine)]
    bad = [p for p in parsed if isinstance(p, BadLine)]
    for b in bad:
        err.print(f"line {b.line_no}: {b.reason}")
    if good:
        settings = _settings(namespace)
        topic = Topics(settings.namespace).name(INPUT_TOPIC)
        produce_reports(settings, topic, [(g.run_id, g.record) for g in good])
        err.print(f"produced {len(good)} report(s) to {topic}")
    if bad:
        err.print(f"[red]{len(bad)} bad line(s) not produced[/red]")
        raise typer.Exit(1)


@consume_app.command("decisions")
def consume_decisions(
    namespace: NamespaceOpt = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest decision.")] = False,
    group: Annotated[str | None, typer.Option(help="Consumer group: resume where it left off.")] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new decisions.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Exit after S seconds without a new decision.")] = None,
) -> None:
    """Print routed decisions, one JSON object per line, each decision once."""
    settings = _settings(namespace)
    topic = Topics(settings.namespace).name(DECISIONS_TOPIC)
    seen: set[str] = set()
    for rec in follow(
        settings,
        topic,
        group=group,
        from_beginning=from_beginning or (not group and not follow_),
        idle_timeout_s=timeout,
        follow_forever=follow_,
    ):
        decision_id = str(rec.value.get("decision_id", f"{rec.partition}:{rec.offset}"))
        if decision_id in seen:
            continue  # downstream sees each decision once even if a record repeats
        seen.add(decision_id)
        print(dumps(rec.value), flush=True)


@app.command()
def status(run_id: str, namespace: NamespaceOpt = None) -> None:
    """A run's state and step timeline, read from its journal."""
    settings = _settings(namespace)
    events = run_journal(settings, run_id)
    if not events:
        err.print(f"[red]no run {run_id} in namespace {settings.namespace}[/red]")
        raise typer.Exit(1)
    t0 = events[0].at_ms
    table = Table(title=f"run {run_id}")
    for col in ("seq", "+ms", "event", "step", "attempt"):
        table.add_column(col)
    for e in events:
        table.add_row(
            str(e.seq), str(e.at_ms - t0), e.kind.value, e.step or "", "" if e.attempt is None else str(e.attempt)
        )
    state = _run_status(events)
    out.print(table)
    started = datetime.fromtimestamp(t0 / 1000, UTC).isoformat(timespec="milliseconds")
    out.print(f"state: [bold]{state}[/bold]  started {started}  last event +{events[-1].at_ms - t0} ms")


_RUN_STATUS = {
    JournalKind.RUN_STARTED: "RUNNING",
    JournalKind.RUN_REDRIVEN: "RUNNING",
    JournalKind.RUN_COMPENSATING: "COMPENSATING",
    JournalKind.RUN_COMPLETED: "COMPLETED",
    JournalKind.RUN_FAILED: "FAILED",
    JournalKind.RUN_COMPENSATED: "COMPENSATED",
}


def _run_status(events: list[JournalEvent]) -> str:
    """The run's status after its last run-level event."""
    state = "UNKNOWN"
    for e in events:
        state = _RUN_STATUS.get(e.kind, state)
    return state


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
    settings = _settings(namespace)
    entries = [
        e
        for e in dlq.letters(settings)
        if (step is None or e.letter.step == step) and not (open_only and e.redrive is not None)
    ]
    table = Table(title=f"dead letters in {settings.namespace}")
    for col in ("id", "kind", "run", "step", "error", "attempts", "age", "status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        attempts = len(json.loads(e.letter.attempts_json)) if e.letter.attempts_json else None
        table.add_row(
            e.letter.dead_letter_id,
            e.letter.kind,
            e.letter.run_id or "-",
            e.letter.step or "-",
            e.letter.error_type,
            "-" if attempts is None else str(attempts),
            _age(e.letter.at_ms),
            e.status,
        )
    out.print(table)
    out.print(f"{len(entries)} dead letter(s)", highlight=False)


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `durable dlq list`).")],
    namespace: NamespaceOpt = None,
    input_only: Annotated[
        bool, typer.Option("--input", help="Print only the step input as JSON (to replay it, or attach to a bug).")
    ] = False,
) -> None:
    """Everything about one dead letter: why, where from, every attempt with its traceback, the input."""
    settings = _settings(namespace)
    entry = dlq.find(settings, letter_id)
    if entry is None:
        err.print(f"[red]no dead letter {letter_id} in namespace {settings.namespace}[/red]")
        raise typer.Exit(1)
    letter = entry.letter
    if input_only:
        if letter.input_json is not None:
            print(json.dumps(json.loads(letter.input_json), indent=2, sort_keys=True))
            return
        try:
            _, record = decode(letter.payload)
        except DecodeError as exc:
            err.print(f"[red]{letter_id} holds an undecodable record ({exc}); its raw bytes are in `dlq show`[/red]")
            raise typer.Exit(1) from None
        print(dumps(record))
        return
    shown = letter.model_dump(mode="json", exclude={"payload", "attempts_json", "input_json"})
    shown["status"] = entry.status
    if entry.redrive is not None:
        shown["redrive"] = entry.redrive.model_dump(mode="json")
    shown["payload"] = letter.payload[:512].decode("utf-8", errors="backslashreplace") if letter.payload else ""
    shown["input"] = json.loads(letter.input_json) if letter.input_json else None
    shown["attempts"] = json.loads(letter.attempts_json) if letter.attempts_json else []
    print(json.dumps(shown, indent=2, sort_keys=False, default=str))


@dlq_app.command("redrive")
def dlq_redrive(
    letter_id: Annotated[str | None, typer.Argument(help="The dead letter to redrive.")] = None,
    namespace: NamespaceOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Redrive every open step and compensation letter.")] = False,
    step: Annotated[str | None, typer.Option(help="With --all: only letters of this step.")] = None,
    timeout: Annotated[float, typer.Option(help="Wait up to S seconds for the worker to apply each redrive.")] = 30.0,
) -> None:
    """Resume runs at their dead-lettered step with a fresh retry budget.

    Idempotent: a letter already redriven is reported and left alone, and the
    orchestrator ignores a repeated request. Exit 0 when every selected
    letter is (or already was) redriven, 1 when one was not applied in time
    or its run has not stopped, 2 when a letter cannot be redriven.
    """
    if (letter_id is None) == (not all_):
        err.print("[red]give a dead letter id, or --all[/red]")
        raise typer.Exit(2)
    settings = _settings(namespace)
    entries = dlq.letters(settings)
    if letter_id is not None:
        chosen = [e for e in entries if e.letter.dead_letter_id == letter_id]
        if not chosen:
            err.print(f"[red]no dead letter {letter_id} in namespace {settings.namespace}[/red]")
            raise typer.Exit(1)
    else:
        chosen = [
            e
            for e in entries
            if e.letter.kind in ("step", "compensation") and (step is None or e.letter.step == step)
        ]
    by = getpass.getuser()
    to_send = []
    code = 0
    for e in chosen:
        letter = e.letter
        try:
            control = dlq.control_for(letter, by)
        except dlq.NotRedrivable as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        events = run_journal(settings, control.run_id)
        if any(
            ev.kind is JournalKind.RUN_REDRIVEN and letter.dead_letter_id in (ev.detail_json or "") for ev in events
        ):
            out.print(f"{letter.dead_letter_id}: already redriven", highlight=False)
            continue
        status = _run_status(events)
        if status not in ("FAILED", "COMPENSATED"):
            out.print(f"{letter.dead_letter_id}: run {control.run_id} is {status}; redrive it once it has stopped")
            code = 1
            continue
        to_send.append(control)
    dlq.request_redrives(settings, to_send)
    deadline = time.monotonic() + timeout
    for control in to_send:
        while not dlq.applied(settings, control) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the run's journal, bounded by --timeout
        if dlq.applied(settings, control):
            out.print(f"{control.dead_letter_id}: redriven, run {control.run_id} resumes at {control.step}")
        else:
            out.print(f"{control.dead_letter_id}: requested, not applied within {timeout:.0f}s (is a worker running?)")
            code = 1
    raise typer.Exit(code)


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="Claims to run.")] = SAMPLES,
    timeout: Annotated[float, typer.Option(help="Give up after S seconds.")] = 90.0,
    fraud_failure_rate: Annotated[
        float, typer.Option(help="Share of fraud-service calls that fail (simulated outage), retried with backoff.")
    ] = 0.3,
    low_latency: Annotated[
        bool, typer.Option(help="Short fetch waits (one worker, so no rebalance risk; see notes/broker-facts.md).")
    ] = True,
    rate: Annotated[float, typer.Option(help="Claims produced per second (0: all at once).")] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a broker and a worker, run the sample claims, print every decision, one trace, the retries and sagas."""
    _logging(verbose)
    import os

    os.environ["DURABLE_FNOL_FRAUD_FAILURE_RATE"] = str(fraud_failure_rate)
    t0 = time.monotonic()
    with open(file, encoding="utf-8") as f:
        parsed = list(parse_lines(f))
    good = [p for p in parsed if isinstance(p, GoodLine)]
    if not good:
        err.print("[red]no valid claims in the file[/red]")
        raise typer.Exit(1)
    external = discovery.bootstrap_servers() if _env_broker() else None
    b = None if external else EmbeddedBroker().start()
    bootstrap = external or (b.bootstrap_servers if b else "")
    ns = f"demo{int(time.time())}"
    state_dir = tempfile.TemporaryDirectory(prefix="durable-demo-")
    settings = Settings.from_env(
        namespace=ns,
        bootstrap_servers=bootstrap,
        worker_name="demo",
        state_dir=Path(state_dir.name),
        low_latency=low_latency or None,
    )
    err.print(
        f"broker {bootstrap} ({'external' if external else 'embedded'}) up in {time.monotonic() - t0:.1f}s; namespace {ns}"
    )
    w = Worker(settings, load_workflows(DEFAULT_WORKFLOWS)).start()
    try:
        topics = Topics(ns)
        ready_by = time.monotonic() + 30
        while not w.ready and not w.failed and time.monotonic() < ready_by:
            time.sleep(0.05)  # the groups form (~3.5 s on the embedded broker) before claims arrive
        err.print(f"worker ready in {time.monotonic() - t0:.1f}s")
        _produce_paced(settings, topics.name(INPUT_TOPIC), good, rate)
        err.print(f"produced {len(good)} claims" + (f" at {rate:g}/s" if rate > 0 else ""))
        expected = {g.run_id for g in good}
        first = last = None
        deadline_left = max(1.0, timeout - (time.monotonic() - t0))
        for rec in follow(
            settings,
            topics.name(DECISIONS_TOPIC),
            group=None,
            from_beginning=True,
            idle_timeout_s=deadline_left,
            follow_forever=True,
        ):
            d = rec.value
            if d.get("run_id") not in expected:
                continue
            expected.discard(str(d["run_id"]))
            now = time.monotonic() - t0
            first = first or now
            last = now
            out.print(
                f"{now:5.1f}s {d['claim_id']} [bold]{d['status']}[/bold] -> {d['queue']} · {d['severity']} · "
                f"reserve {d['reserve']:,.0f} {d['currency']} · docs: {', '.join(d['documents_requested']) or '-'}"
                f" · {'; '.join(d['reasons'])}",
                highlight=False,
            )
            if not expected or w.failed or time.monotonic() - t0 > timeout:
                break
        if w.failed:
            err.print(f"[red]worker failed: {w.failed}[/red]")
            raise typer.Exit(1)
        if expected:
            err.print(
                f"[red]{len(expected)} of {len(good)} decisions missing after {timeout:.0f}s, e.g. {sorted(expected)[:3]}[/red]"
            )
            raise typer.Exit(1)
        err.print(f"all {len(good)} decisions in {last:.1f}s (first after {first:.1f}s), from start of `durable demo`")
        _demo_trace(settings, w, [g.run_id for g in good])
        _demo_sagas(settings)
    finally:
        w.stop()
        w.join(15)
        if b:
            b.stop()
        state_dir.cleanup()


def _produce_paced(settings: Settings, topic: str, good: list[GoodLine], rate: float) -> None:
    """Produce claims at ``rate`` per second, as they would arrive (0: all at once)."""
    if rate <= 0:
        produce_reports(settings, topic, [(g.run_id, g.record) for g in good])
        return
    ensure_topics(settings, [topic])
    p = kafka_producer(settings)
    start = time.monotonic()
    for i, g in enumerate(good):
        while time.monotonic() < start + i / rate:
            time.sleep(0.005)  # pacing the load, as arrivals would be paced
        p.produce(topic, key=g.run_id, value=to_bytes(g.record), partition=partition_for(g.run_id, settings.partitions))
        p.poll(0)
    if p.flush(30) > 0:
        err.print("[red]some claims were not acknowledged by the broker[/red]")
        raise typer.Exit(1)


def _demo_trace(settings: Settings, worker: Worker, run_ids: list[str]) -> None:
    """Draw the trace of the first run that was routed straight through."""
    if worker.telemetry is not None:
        worker.telemetry.flush()
    decided = {
        str(r.value.get("run_id")): r.value
        for r in follow(
            settings,
            Topics(settings.namespace).name(DECISIONS_TOPIC),
            group=None,
            from_beginning=True,
            idle_timeout_s=None,
            follow_forever=False,
        )
    }
    chosen = next((r for r in run_ids if decided.get(r, {}).get("status") == "ROUTED"), run_ids[0])
    view = trace_view.load(settings, chosen, Topics(settings.namespace).name(DECISIONS_TOPIC))
    if not view.spans:
        return
    table, lines = trace_view.render(view)
    out.print()
    out.print(table)
    for line in lines:
        out.print(line)


def _demo_sagas(settings: Settings) -> None:
    """What the engine did beyond the happy path: one retried run, one compensated run, the dead letters."""
    runs = io_journals(settings)
    retried = {r: ev for r, ev in runs.items() if any(e.kind is JournalKind.STEP_RETRY_WAITING for e in ev)}
    compensated = {r: ev for r, ev in runs.items() if any(e.kind is JournalKind.RUN_COMPENSATED for e in ev)}
    out.print(
        f"\n[bold]{len(retried)}[/bold] run(s) retried a step after a backoff; "
        f"[bold]{len(compensated)}[/bold] run(s) compensated.",
        highlight=False,
    )
    for title, chosen in (("retried", retried), ("compensated", compensated)):
        if not chosen:
            continue
        run_id, events = sorted(chosen.items())[0]
        t0 = events[0].at_ms
        out.print(f"\n{title}: {run_id}", highlight=False)
        for e in events:
            if e.kind in (JournalKind.STEP_SCHEDULED, JournalKind.STEP_SUCCEEDED) and title == "compensated":
                continue
            detail = json.loads(e.detail_json) if e.detail_json else {}
            note = ""
            if e.kind in (JournalKind.STEP_FAILED, JournalKind.COMPENSATION_FAILED):
                note = f"{detail.get('type')}: {detail.get('message')}"
            elif e.kind in (JournalKind.STEP_RETRY_WAITING, JournalKind.COMPENSATION_RETRY_WAITING):
                note = f"attempt {detail.get('next_attempt')} due in {detail.get('backoff_ms')} ms"
            elif e.kind is JournalKind.STEP_DEAD_LETTERED:
                note = f"dead letter {detail.get('dead_letter_id')}"
            elif e.kind is JournalKind.COMPENSATION_SUCCEEDED:
                note = json.dumps(detail)
            elif e.kind in (JournalKind.RUN_COMPENSATED, JournalKind.RUN_FAILED):
                note = str(detail.get("reason", ""))
            step = f" {e.step}" if e.step else ""
            attempt = f" #{e.attempt}" if e.attempt else ""
            line = f"  +{e.at_ms - t0:5d} ms  {e.kind.value}{step}{attempt}  {note}".rstrip()
            out.print(line, highlight=False, soft_wrap=True)
    letters = dlq.letters(settings)
    if letters:
        out.print(f"\n{len(letters)} dead letter(s); `durable dlq list` / `show` / `redrive` handle them:")
        for entry in letters:
            out.print(f"  {entry.letter.dead_letter_id}  {entry.letter.reason}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- replay

WorkflowOpt = Annotated[
    list[str] | None,
    typer.Option("--workflow", help="Workflow code to replay with, module:attribute (default: the FNOL workflow)."),
]
VERDICT_STYLE = {"same": "green", "failure reproduced": "yellow", "different": "red", "new failure": "red"}


def _workflow_named(name: str, specs: list[str] | None) -> Workflow:
    by_name = {wf.name: wf for wf in load_workflows(specs or DEFAULT_WORKFLOWS)}
    if name not in by_name:
        err.print(f"[red]no workflow {name!r} in {sorted(by_name)}: pass --workflow module:attribute[/red]")
        raise typer.Exit(2)
    return by_name[name]


def _iso_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"[red]not an ISO-8601 date-time: {text!r}[/red]")
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _recorded(settings: Settings, run_id: str) -> RecordedRun:
    events = run_journal(settings, run_id)
    if not events:
        err.print(f"[red]no run {run_id} in namespace {settings.namespace}[/red]")
        raise typer.Exit(2)
    return recorded_run(events)


def _print_run_replay(replayed: RunReplay, live: bool) -> None:
    run = replayed.run
    table = Table(title=f"replay of {run.run_id} ({'live' if live else 'recorded values served'})")
    for col in ("step", "attempt", "recorded", "replayed", "verdict"):
        table.add_column(col, overflow="fold")
    for a in replayed.attempts:
        was = "ok" if a.recorded.error is None else f"{a.recorded.error.get('type')}: {a.recorded.error.get('message')}"
        now = "ok" if a.error is None else f"{a.error.get('type')}: {a.error.get('message')}"
        style = VERDICT_STYLE[a.verdict]
        table.add_row(a.recorded.label, str(a.recorded.attempt), was, now, f"[{style}]{a.verdict}[/{style}]")
    for skipped in replayed.skipped:
        table.add_row(skipped.label, str(skipped.attempt), "(in flight)", "-", "not finished")
    out.print(table)
    for a in replayed.attempts:
        if a.diff:
            out.print(f"[bold]{a.recorded.label} #{a.recorded.attempt}[/bold]")
            for line in a.diff:
                colour = "red" if line.startswith("-") else "green" if line.startswith("+") else "dim"
                out.print(f"[{colour}]{escape(line)}[/{colour}]", highlight=False)
    verdict = "would complete" if replayed.would_complete else "would not complete"
    out.print(f"run: recorded {run.status}; with the current code it {verdict}", highlight=False)
    if replayed.result is not None and run.status != "COMPLETED":
        out.print(f"  result it would give: {dumps(replayed.result)}", highlight=False, soft_wrap=True)
    elif replayed.result is not None and replayed.result != run.output:
        changed = {k: (run.output or {}).get(k) for k in replayed.result if replayed.result.get(k) != (run.output or {}).get(k)}
        out.print(f"  result differs in {sorted(changed)}", highlight=False)
    counts = {v: sum(1 for a in replayed.attempts if a.verdict == v) for v in VERDICT_STYLE}
    out.print(", ".join(f"{n} {v}" for v, n in counts.items() if n), highlight=False)


@app.command()
def replay(
    run_id: Annotated[str | None, typer.Argument(help="The run to replay, from its journal.")] = None,
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
    live: Annotated[bool, typer.Option(help="Call tools and models for real instead of serving recorded values.")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="Replay a run export (`durable runs export`).")] = None,
    step: Annotated[str | None, typer.Option(help="Replay one step against --input.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="The step input as JSON ({input, deps}), e.g. from `dlq show --input`.")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="With --step: take the workflow and recorded values from this run.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Window start (ISO-8601): replay its inputs in a sandbox.")] = None,
    to: Annotated[str | None, typer.Option(help="Window end (ISO-8601, exclusive).")] = None,
    sandbox: Annotated[str | None, typer.Option(help="Sandbox namespace for a window replay (default: <ns>-replay-<time>).")] = None,
    timeout: Annotated[float, typer.Option(help="Window replay: give up waiting for outputs after S seconds.")] = 120.0,
) -> None:
    """Re-execute with the current code and compare with what was recorded; writes nothing to production topics.

    Three forms: `replay RUN_ID` (every attempt of a run on its captured inputs), `replay --step S --input F
    [--run RUN_ID]` (one step against a known-bad input), `replay --from T1 --to T2` (a window of inputs, run in
    a sandbox namespace, decisions diffed). Exit codes: 0 all same; 1 differences or new failures;
    3 failures reproduced and nothing different; 2 usage errors.
    """
    modes = [run_id is not None or file is not None, step is not None, from_ is not None]
    if sum(modes) != 1:
        err.print("[red]give a RUN_ID (or --file), or --step with --input, or --from with --to[/red]")
        raise typer.Exit(2)
    if from_ is not None:
        _replay_window(namespace, workflow, from_, to, sandbox, timeout)
        return
    models = client_from_env() if live else None
    if step is not None:
        _replay_step(namespace, workflow, step, input_file, run, live)
        return
    if file is not None:
        recorded = RecordedRun.from_json(file.read_text())
    else:
        assert run_id is not None
        recorded = _recorded(_settings(namespace), run_id)
    wf = _workflow_named(recorded.workflow, workflow)
    replayed = asyncio.run(replay_run(recorded, wf, live=live, models=models or client_from_env()))
    _print_run_replay(replayed, live)
    raise typer.Exit(replayed.exit_code)


def _replay_step(
    namespace: str | None, workflow: list[str] | None, step: str, input_file: Path | None, run: str | None, live: bool
) -> None:
    if input_file is None:
        err.print("[red]--step needs --input FILE.json[/red]")
        raise typer.Exit(2)
    try:
        step_input = json.loads(input_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        err.print(f"[red]cannot read {input_file}: {exc}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(step_input, dict) or "input" not in step_input:
        err.print("[red]the input must be a JSON object with 'input' (and 'deps'), as `dlq show --input` prints[/red]")
        raise typer.Exit(2)
    step_input.setdefault("deps", {})
    recorded_calls: list[dict[str, object]] | None = None
    run_id = run or "replay"
    if run is not None:
        recorded = _recorded(_settings(namespace), run)
        wf = _workflow_named(recorded.workflow, workflow)
        attempts = [a for a in recorded.attempts if a.step == step and a.action == "run" and a.finished]
        recorded_calls = attempts[-1].recorded if attempts and not live else None
    else:
        wfs = load_workflows(workflow or DEFAULT_WORKFLOWS)
        wf = next((w for w in wfs if w.has_step(step)), wfs[0])
    if not wf.has_step(step):
        err.print(f"[red]workflow {wf.name} has no step {step!r}[/red]")
        raise typer.Exit(2)
    attempt = RecordedAttempt(step, "run", 1, step_input, recorded=recorded_calls or [])
    replayed = asyncio.run(
        replay_attempt(wf, run_id, attempt, live=recorded_calls is None, models=client_from_env())
    )
    if replayed.error is None:
        print(json.dumps(replayed.output, indent=2, sort_keys=True))
        raise typer.Exit(0)
    err.print(f"[red]{replayed.error['type']}: {escape(str(replayed.error['message']))}[/red]")
    print(str(replayed.error.get("traceback", "")).rstrip(), file=sys.stderr)
    raise typer.Exit(1)


def _replay_window(
    namespace: str | None, workflow: list[str] | None, from_: str, to: str | None, sandbox: str | None, timeout: float
) -> None:
    if to is None:
        err.print("[red]--from needs --to[/red]")
        raise typer.Exit(2)
    settings = _settings(namespace)
    start, end = _iso_ms(from_), _iso_ms(to)
    wfs = load_workflows(workflow or DEFAULT_WORKFLOWS)
    box = sandbox or f"{settings.namespace}-replay-{int(time.time())}"
    try:
        result = replay_window(
            settings, wfs[0], start, end, box, ignore=frozenset({"decided_at_ms", "decision_id"}), timeout_s=timeout
        )
    except SandboxIsProduction as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    out.print(
        f"window {from_} .. {to}: {result.inputs} input record(s), {result.runs} run(s), replayed in namespace "
        f"{result.sandbox} in {result.elapsed_s:.1f}s",
        highlight=False,
    )
    for d in result.diffs:
        if d.kind == "changed":
            fields = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in d.changes.items())
            out.print(f"  changed  {d.run_id}  {fields}", highlight=False, soft_wrap=True)
        elif d.kind in ("missing", "new"):
            out.print(f"  {d.kind:8} {d.run_id}", highlight=False)
    counts = {k: result.count(k) for k in ("same", "changed", "missing", "new")}
    out.print("  ".join(f"{k}: {n}" for k, n in counts.items()), highlight=False)
    raise typer.Exit(0 if counts["changed"] == counts["missing"] == counts["new"] == 0 else 1)


@runs_app.command("export")
def runs_export(
    run_id: str,
    namespace: NamespaceOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """Write what a run captured (inputs, outputs, errors, outside values) as JSON, to attach to a bug.

    `durable replay --file FILE` replays it without a broker.
    """
    text = _recorded(_settings(namespace), run_id).to_json()
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        err.print(f"wrote {output}")


# ---------------------------------------------------------------- traces


@app.command("trace")
def trace_cmd(run_id: str, namespace: NamespaceOpt = None) -> None:
    """Draw a run's trace: one row per span with its start, a duration bar, tokens, cost, eval; then the totals."""
    settings = _settings(namespace)
    view = trace_view.load(settings, run_id, Topics(settings.namespace).name(DECISIONS_TOPIC))
    if not view.spans:
        err.print(f"[red]no spans of run {run_id} in namespace {settings.namespace} (is the run finished?)[/red]")
        raise typer.Exit(1)
    table, lines = trace_view.render(view)
    out.print(table)
    for line in lines:
        out.print(line)


# ---------------------------------------------------------------- offsets


@offsets_app.command("reset")
def offsets_reset(
    group: Annotated[str, typer.Option(help="Consumer group id.")],
    topic: Annotated[list[str] | None, typer.Option(help="Topic (repeat; default: every topic the group committed).")] = None,
    namespace: NamespaceOpt = None,
    to_datetime: Annotated[str | None, typer.Option(help="First record at or after this ISO-8601 time.")] = None,
    to_offset: Annotated[int | None, typer.Option(help="This offset, in every partition.")] = None,
    shift_by: Annotated[int | None, typer.Option(help="Move by N (negative: back).")] = None,
    to_earliest: Annotated[bool, typer.Option(help="The first offset still in the log.")] = False,
    to_latest: Annotated[bool, typer.Option(help="The end of the log.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print current and new offsets; change nothing.")] = False,
    execute: Annotated[bool, typer.Option("--execute", help="Store the new offsets.")] = False,
    force: Annotated[bool, typer.Option(help="Execute even while the group has active members.")] = False,
) -> None:
    """Move a consumer group's offsets, as kafka-consumer-groups --reset-offsets does.

    Offsets are clamped to the log. A topic name without the namespace is
    looked up in it too (`decisions` -> `<ns>.decisions`). Refuses to execute
    while the group is active (exit 1) unless --force.
    """
    if dry_run == execute:
        err.print("[red]choose --dry-run or --execute[/red]")
        raise typer.Exit(2)
    try:
        spec = ResetSpec(
            to_datetime_ms=_iso_ms(to_datetime) if to_datetime else None,
            to_offset=to_offset,
            shift_by=shift_by,
            to_earliest=to_earliest,
            to_latest=to_latest,
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    settings = _settings(namespace)
    names = [_topic_name(settings, t) for t in topic] if topic else None
    try:
        planned = offsets.plan(settings, group, names, spec)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"group {group}: {'dry run' if dry_run else 'reset'}")
    for col in ("topic", "partition", "current", "new", "log start", "log end", "found by"):
        table.add_column(col)
    for r in planned:
        current = "-" if r.current is None else str(r.current)
        table.add_row(r.topic, str(r.partition), current, str(r.new), str(r.log_start), str(r.log_end), r.lookup)
    out.print(table)
    if dry_run:
        out.print("dry run: nothing changed (run again with --execute)")
        return
    try:
        offsets.execute(settings, group, planned, force=force)
    except offsets.GroupActive as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(f"offsets of group {group} reset on {len(planned)} partition(s)")


def _topic_name(settings: Settings, name: str) -> str:
    try:
        offsets.partitions_of(settings, name)
        return name
    except ValueError:
        return Topics(settings.namespace).name(name)


def _env_broker() -> bool:
    import os

    return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


def main() -> None:
    try:
        app()
    except WorkflowNotFound as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)


if __name__ == "__main__":
    main()
