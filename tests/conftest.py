"""Shared fixtures: a real broker for the whole session, namespaces, workers, waits.

The broker is the one named by ``KAFKA_BOOTSTRAP_SERVERS`` if set; else a
testcontainers Kafka when ``DURABLE_TEST_BROKER=testcontainers`` and Docker is
present; else the embedded Tansu broker, started here and stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import TopicPartition

import schemas.fnol  # noqa: F401 - FNOL's records, known to the codec
from processors import pii
from schemas import DecodeError, decode, register
from streams import signing
from streams.broker import EmbeddedBroker, free_port
from streams.config import Settings
from streams.kafka import read_to_end, reader
from streams.reading import header

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
register(ROOT / "tests" / "records")  # the generic test workflows' records

# The simulated model at 50x speed keeps FNOL runs short; and a run's latency budget (3 s) is not
# what the integration tests judge: on the embedded broker's default settings a step costs ~250 ms
# (notes/broker-facts.md), so budgets are generous here and tested where they are set on purpose.
os.environ.setdefault("DURABLE_MODEL_SPEED", "50")
os.environ.setdefault("DURABLE_FNOL_BUDGETS", '{"default": {"latency_s": 120}}')
# The public test key: the shipped fraud-history table (history.json) is keyed under it, and no test
# run writes a generated key file into the working tree.
os.environ["DURABLE_PII_KEY"] = pii.DEMO_KEY
# One worker secret for every worker and CLI a test starts (each has its own state directory, so
# generated secrets would differ), and no generated secret file in the working tree.
os.environ["DURABLE_WORKER_SECRET"] = TEST_WORKER_SECRET = "durable-tests-worker-secret-not-secret-0123456789"
# One throwaway decision-signing key for every worker a test starts (a worker refuses to start without one),
# in a temporary directory removed at exit; tests of keys make their own.
_KEY_DIR = tempfile.TemporaryDirectory(prefix="durable-test-keys-")
TEST_SIGNER = signing.use_fresh_key(Path(_KEY_DIR.name))


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if os.environ.get("DURABLE_TEST_BROKER") == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    log = ROOT / ".durable" / "test-broker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=str(log)) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def settings(bootstrap: str, tmp_path: Path) -> Settings:
    """A fresh namespace (its own topics and groups) for each test."""
    return Settings(
        bootstrap_servers=bootstrap,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=4,
        state_dir=tmp_path / "state",
        worker_name="w0",
    )


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy, or fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every_s)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def read_topic(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record currently in ``topic`` (all partitions, to their ends), decoded.

    Each also has ``_partition``, ``_offset`` and ``_id`` (the ``id`` header the orchestrator puts on its writes).
    """
    c = reader(settings)
    out: list[dict[str, Any]] = []
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        for msg in read_to_end(c, [TopicPartition(topic, p, 0) for p in sorted(meta.partitions)]):
            try:
                _, value = decode(msg.value() or b"")
            except DecodeError as exc:
                value = {"undecodable": str(exc)}
            value["_partition"], value["_offset"], value["_id"] = msg.partition(), msg.offset(), header(msg, "id")
            out.append(value)
    finally:
        c.close()
    return out


class WorkerProcesses:
    """``durable worker`` subprocesses of one test, killed at its end whatever happens."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--name", name, "--verbose", *args],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
                "DURABLE_NAMESPACE": self.settings.namespace,
                "DURABLE_STATE_DIR": str(self.settings.state_dir),
                "DURABLE_PARTITIONS": str(self.settings.partitions),
                **(env or {}),
            },
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(settings, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[list[EmbeddedBroker]]:
    """A broker of this test alone (a list: a restart replaces it), stopped at the end."""
    log = ROOT / ".durable" / "test-broker-loss.log"
    brokers = [EmbeddedBroker(port=free_port(), log_path=str(log)).start()]
    try:
        yield brokers
    finally:
        for broker in brokers:
            pid = broker.pid
            if pid is not None and not broker.exited:
                os.kill(pid, signal.SIGCONT)  # a paused broker cannot stop
            broker.stop()


@pytest.fixture
def on_own_broker(own_broker: list[EmbeddedBroker], tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcesses]]:
    settings = Settings(
        bootstrap_servers=own_broker[0].bootstrap_servers,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=4,
        state_dir=tmp_path / "state",
        worker_name="w0",
    )
    procs = WorkerProcesses(settings, tmp_path)
    try:
        yield settings, procs
    finally:
        procs.stop_all()
