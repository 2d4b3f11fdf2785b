"""`durable broker` and `durable worker`: the processes that run the engine."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from processors import pii
from streams import authentication, discovery
from streams.broker import BrokerStartError, EmbeddedBroker
from streams.cli.common import NamespaceOpt, WorkflowOpt, configure_logging, err, fail, settings, workflows
from streams.worker import Role, Worker


def broker(port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0) -> None:
    """Run the embedded broker (Tansu, in memory) in the foreground."""
    try:
        b = EmbeddedBroker(port=port).start()
    except BrokerStartError as exc:
        raise fail(f"broker did not start: {exc}") from None
    discovery.record(b)
    print(f"KAFKA_BOOTSTRAP_SERVERS={b.bootstrap_servers}", flush=True)
    err.print(
        "embedded broker up. Memory storage: stopping or restarting it loses every topic, consumer group and "
        "offset (runs in flight, decisions, journal, dead letters); workers notice and exit with code 75 to be "
        "restarted against the empty broker. For data that must outlive this process use real Kafka "
        "(compose.yaml, KAFKA_BOOTSTRAP_SERVERS). Ctrl-C to stop."
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if b.exited:
                raise fail("broker exited")
    except KeyboardInterrupt:
        pass
    finally:
        discovery.forget(b)
        b.stop()


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
    s = settings(namespace, worker_name=name or "worker", state_dir=state_dir)
    w = Worker(s, workflows(workflow), role)
    err.print(f"worker {s.worker_name} ({role.value}) on {s.bootstrap_servers}, namespace {s.namespace}")
    raise typer.Exit(w.run_forever())
