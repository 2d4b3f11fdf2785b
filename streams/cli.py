"""The ``durable`` command line."""

from __future__ import annotations

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
from rich.table import Table

from connectors.sources.fnol import BadLine, GoodLine, parse_lines
from processors.fnol.workflow import DECISIONS_TOPIC, INPUT_TOPIC
from streams import discovery
from streams.broker import BrokerStartError, EmbeddedBroker
from streams.config import Settings
from streams.io import dumps, follow, produce_reports, run_journal
from streams.topics import Topics
from streams.worker import DEFAULT_WORKFLOWS, Role, Worker, load_workflows

app = typer.Typer(help="Durable execution on Kafka: FNOL claims sagas that survive restarts.", no_args_is_help=True)
produce_app = typer.Typer(help="Produce records onto the engine's input topics.", no_args_is_help=True)
consume_app = typer.Typer(help="Read the engine's output topics.", no_args_is_help=True)
app.add_typer(produce_app, name="produce")
app.add_typer(consume_app, name="consume")

err = Console(stderr=True)
out = Console()

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
    state = "RUNNING"
    for e in events:
        table.add_row(
            str(e.seq), str(e.at_ms - t0), e.kind.value, e.step or "", "" if e.attempt is None else str(e.attempt)
        )
        if e.kind.value in ("RUN_COMPLETED", "RUN_FAILED"):
            state = e.kind.value.removeprefix("RUN_")
    out.print(table)
    started = datetime.fromtimestamp(t0 / 1000, UTC).isoformat(timespec="milliseconds")
    out.print(f"state: [bold]{state}[/bold]  started {started}  last event +{events[-1].at_ms - t0} ms")


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="Claims to run.")] = SAMPLES,
    timeout: Annotated[float, typer.Option(help="Give up after S seconds.")] = 90.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a broker and a worker, run the sample claims, print every decision."""
    _logging(verbose)
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
        namespace=ns, bootstrap_servers=bootstrap, worker_name="demo", state_dir=Path(state_dir.name)
    )
    err.print(
        f"broker {bootstrap} ({'external' if external else 'embedded'}) up in {time.monotonic() - t0:.1f}s; namespace {ns}"
    )
    w = Worker(settings, load_workflows(DEFAULT_WORKFLOWS)).start()
    try:
        topics = Topics(ns)
        produce_reports(settings, topics.name(INPUT_TOPIC), [(g.run_id, g.record) for g in good])
        err.print(f"produced {len(good)} claims")
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
    finally:
        w.stop()
        w.join(15)
        if b:
            b.stop()
        state_dir.cleanup()


def _env_broker() -> bool:
    import os

    return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
