"""`durable broker` and `durable worker`: the processes that run the engine."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from processors import pii
from streams import authentication, discovery, signed_outputs, signing, wall
from streams.broker import BrokerStartError, EmbeddedBroker
from streams.cli.common import NamespaceOpt, WorkflowOpt, configure_logging, err, fail, settings, workflows
from streams.kafka import DEFAULT_FETCH_WAIT_MS, LOW_LATENCY_FETCH_WAIT_MS
from streams.worker import Role, Worker


def broker(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    status: Annotated[
        bool,
        typer.Option("--status", help="Do not start one: show how far the running broker's topics are from its wall."),
    ] = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Run the embedded broker (Tansu, in memory) in the foreground, or show a running one's --status."""
    if status:
        wall_status(namespace)
        return
    try:
        b = EmbeddedBroker(port=port).start()
    except BrokerStartError as exc:
        raise fail(f"broker did not start: {exc}") from None
    # Ctrl-C and SIGTERM only set an event, from before the address is printed (a caller that read it may stop
    # us at once): a KeyboardInterrupt could land anywhere, e.g. inside the banner's printing, and skip the stop.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    discovery.record(b)
    print(f"KAFKA_BOOTSTRAP_SERVERS={b.bootstrap_servers}", flush=True)
    err.print(
        "embedded broker up. Memory storage: stopping or restarting it loses every topic, consumer group and "
        "offset (runs in flight, decisions, journal, dead letters); workers notice and exit with code 75 to be "
        "restarted against the empty broker. For data that must outlive this process use real Kafka "
        "(compose.yaml, KAFKA_BOOTSTRAP_SERVERS). Ctrl-C to stop."
    )
    try:
        while not stop.wait(0.5):
            if b.exited:
                raise fail("broker exited")
    finally:
        discovery.forget(b)
        b.stop()


def wall_status(namespace: str | None) -> None:
    """Print each topic's largest partition against the batch counts at which consumers stop (see streams.wall)."""
    s = settings(namespace)
    if not wall.is_embedded(s):
        err.print(f"{s.bootstrap_servers} is not the embedded broker: it has no batch wall to report")
        return
    low, default = LOW_LATENCY_FETCH_WAIT_MS, DEFAULT_FETCH_WAIT_MS
    table = Table(title=f"embedded broker {s.bootstrap_servers}, namespace {s.namespace}: distance to the wall")
    for column in ("topic", "partition", "end offset", "batches", f"of wall at {low} ms", f"of wall at {default} ms"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    table.add_column("state")
    largest: dict[str, wall.PartitionSize] = {}
    for x in wall.measure(s):
        largest.setdefault(x.topic, x)  # measure() lists the largest first
    for x in sorted(largest.values(), key=lambda x: x.topic):
        table.add_row(
            escape(x.topic),
            str(x.partition),
            f"{x.end_offset:,}",
            f"{x.batches:,}",
            f"{x.fraction(low):.0%}",
            f"{x.fraction(default):.1%}",
            wall.severity(x.fraction(low)),
        )
    Console().print(table)
    err.print(
        f"Consumers stop receiving from a partition of about {wall.wall_batches(low):,} batches when they wait {low} ms"
        f" per fetch (DURABLE_LOW_LATENCY=1), {wall.wall_batches(default):,} when they wait {default} ms; workers warn"
        f" at {wall.WARN_FRACTION:.0%} of that and size new consumers' fetch wait to fit."
    )


def worker(
    namespace: NamespaceOpt = None,
    name: Annotated[str | None, typer.Option(help="Worker name: its state directory. Unique per host.")] = None,
    role: Annotated[Role, typer.Option(help="Run the orchestrator, the executor, or both.")] = Role.ALL,
    workflow: WorkflowOpt = None,
    state_dir: Annotated[Path | None, typer.Option(help="Where RocksDB state lives.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one worker until SIGTERM or Ctrl-C. Several may run."""
    configure_logging(verbose)
    try:
        pii.require_explicit_key()  # DURABLE_ENV=production: no generated or demo PII key
        authentication.require_explicit_secret()  # nor a generated worker secret
    except (pii.PiiKeyError, authentication.WorkerSecretError) as exc:
        raise fail(f"refusing to start: {exc}", 2) from None
    loaded = workflows(workflow)
    if role is not Role.EXECUTOR:
        try:  # an orchestrator signs every output it writes (README "Trust"): no key, no start
            if signing.signer_from_env() is not None:
                for wf in loaded:
                    signed_outputs.require_signable(wf.output_schema)
        except (signing.SigningKeyError, signed_outputs.UnsignableSchema) as exc:
            raise fail(f"refusing to start: {exc}", 2) from None
    s = settings(namespace, worker_name=name or "worker", state_dir=state_dir)
    w = Worker(s, loaded, role)
    err.print(f"worker {s.worker_name} ({role.value}) on {s.bootstrap_servers}, namespace {s.namespace}")
    raise typer.Exit(w.run_forever())
