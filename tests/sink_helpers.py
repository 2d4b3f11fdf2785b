"""What the sink tests share: a fresh PostgreSQL database per test, decisions written onto the topic, sink processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from schemas.fnol.models import RoutedDecision
from streams import signed_outputs
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics, ensure_topics
from streams.writer import Writer
from tests.conftest import TEST_SIGNER, wait_for

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses run its code, not an installed copy
# This machine's PostgreSQL (trust auth); elsewhere set DURABLE_TEST_POSTGRES to a server's admin DSN.
ADMIN_DSN = os.environ.get("DURABLE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database() -> Iterator[str]:
    """A database of its own for one test (so runs never collide), dropped afterwards."""
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is needed by the sink tests and is not reachable at {ADMIN_DSN} "
            f"(start it, or set DURABLE_TEST_POSTGRES to an admin DSN): {exc}"
        )
    name = f"durable_sink_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def decision(run: str, n: int, decided_at_ms: int, status: str = "ROUTED") -> RoutedDecision:
    """A decision of run ``run`` (its ``n``-th generation), as the FNOL workflow writes one."""
    tenant, claim = run.split(":")[1:]
    return RoutedDecision(
        decision_id=f"{run}/decision/{n}",
        claim_id=claim,
        tenant_id=tenant,
        run_id=run,
        status=status,  # type: ignore[arg-type]
        queue="standard_claims" if status == "ROUTED" else "manual_handling",
        severity="MEDIUM",
        reserve=1000.0 + n,
        currency="GBP",
        documents_requested=["photos_of_damage"],
        reasons=[f"generation {n}"],
        decided_at_ms=decided_at_ms,
    )


def signed(item: RoutedDecision) -> bytes:
    """A decision as a worker writes it: signed by the test key (sinks verify before they store or deliver)."""
    return signed_outputs.sign(item.avro_name, item.model_dump(mode="python"), item.journal_head, TEST_SIGNER)


def write_decisions(settings: Settings, items: list[RoutedDecision | bytes]) -> None:
    """Write decisions (keyed by run, on the run's partition, with the ``id`` header) or raw bytes to the topic."""
    topic = Topics(settings.namespace).name("decisions")
    ensure_topics(settings, [topic, Topics(settings.namespace).dead_letters])
    writer = Writer(settings)
    try:
        for item in items:
            if isinstance(item, bytes):
                writer.send(topic, item, key="garbage", partition=0)
            else:
                writer.send(
                    topic,
                    signed(item),
                    key=item.run_id,
                    partition=partition_for(item.run_id, settings.partitions),
                    headers=[("id", item.decision_id.encode())],
                )
        writer.flush(30)
    finally:
        writer.close()


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode(), params).fetchall()


class SinkProcesses:
    """``durable sink postgres`` subprocesses of one test, killed at its end whatever happens."""

    def __init__(self, settings: Settings, dsn: str, log_dir: Path) -> None:
        self.settings, self.dsn, self.log_dir = settings, dsn, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "sink", "postgres", "--dsn", self.dsn, "--name", name, "--verbose"],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
                "DURABLE_NAMESPACE": self.settings.namespace,
                "DURABLE_STATE_DIR": str(self.settings.state_dir / name),
                "DURABLE_PARTITIONS": str(self.settings.partitions),
            },
        )
        self.procs.append(proc)
        return proc

    def wait(self, condition: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.5) -> T:
        """:func:`wait_for`, failing with the tail of the newest sink's log."""
        try:
            return wait_for(condition, timeout_s, what, every_s)
        except AssertionError as exc:
            names = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
            tail = names[-1].read_text(errors="replace")[-3000:] if names else "(no sink log)"
            raise AssertionError(f"{exc}\n--- newest sink log ---\n{tail}") from None

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
