"""Bounded state on a real broker: finished runs expire from the run table, in-flight runs never do.

One worker with a 1 s run retention: finished runs get an ExpiredRun marker in the changelog and leave
RocksDB; a run waiting out a retry backoff stays; `durable status`/`replay` say the runs expired; their
re-submissions start nothing. Then a worker restarted on a wiped state directory, with a short marker
period, restores the markers and forgets them with tombstones; a run table rebuilt from the changelog
holds none of them. And `durable dlq redrive` refuses a run that expired.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from processors.engine.inputs import accept
from schemas import DecodeError, from_bytes
from schemas.codec import peek_schema
from schemas.models import ExpiredRun, RunState, RunStatus
from streams.config import Settings
from streams.intake import produce_inputs
from streams.kafka import partition_for, read_to_end, reader
from streams.runtable import RunTable
from streams.topics import Topics
from streams.worker import Worker
from tests.conftest import ROOT, read_topic, wait_for
from tests.helpers import outcomes
from tests.workflows import FAILING, FLAKY_LONG

Latest = RunState | ExpiredRun | None  # None: a tombstone


def changelog(settings: Settings) -> tuple[dict[str, Latest], int]:
    """The latest changelog record of every run, and how many tombstones the changelog holds."""
    topic = Topics(settings.namespace).run_changelog
    latest: dict[str, Latest] = {}
    tombstones = 0
    c = reader(settings)
    try:
        starts = [TopicPartition(topic, p, 0) for p in range(settings.partitions)]
        for msg in read_to_end(c, starts):
            key, value = (msg.key() or b"").decode(), msg.value()
            if value is None:
                latest[key], tombstones = None, tombstones + 1
                continue
            try:
                expired = peek_schema(value).name == ExpiredRun.avro_name
            except DecodeError:
                continue
            latest[key] = from_bytes(value, ExpiredRun) if expired else from_bytes(value, RunState)
    finally:
        c.close()
    return latest, tombstones


def order(order_id: str, amount: float = 10.0) -> Any:
    return accept(FLAKY_LONG, {"order_id": order_id, "customer": "c1", "amount": amount})


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_finished_runs_expire_and_stay_expired(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_FLAKY_PREFIX", "W")  # only W orders fail, and wait out 5 s, 10 s, 20 s backoffs
    monkeypatch.setenv("TEST_FAIL_ATTEMPTS", "3")
    s = dataclasses.replace(settings, run_retention_s=1.0, expired_marker_s=600.0)
    waiting = order("W00000")
    done = [order(f"O{i:05d}") for i in range(8)]
    ids = {o.run_id for o in done}
    worker = Worker(s, [FLAKY_LONG]).start()
    try:
        produce_inputs(s, FLAKY_LONG, [waiting])
        wait_for(lambda: isinstance(changelog(s)[0].get(waiting.run_id), RunState), 60, "the waiting run's state")
        produce_inputs(s, FLAKY_LONG, done)
        wait_for(lambda: {o["run_id"] for o in outcomes(s)} >= ids or worker.failed, 60, "the finished runs")

        def all_expired() -> dict[str, Latest] | None:
            latest = changelog(s)[0]
            return latest if all(isinstance(latest.get(r), ExpiredRun) for r in ids) else None

        latest = wait_for(all_expired, 30, "every finished run expired in the changelog")
        # The run in flight (waiting out its backoff) was swept past and kept, whole.
        kept = latest[waiting.run_id]
        assert isinstance(kept, RunState) and kept.status == RunStatus.RUNNING
        assert max(m.expired_at_ms for m in latest.values() if isinstance(m, ExpiredRun)) > kept.updated_at_ms + 1000
        marker = latest[done[0].run_id]
        assert isinstance(marker, ExpiredRun) and marker.status == "COMPLETED"

        # Operators are told the run expired; its journal is still there to read and replay.
        shown = cli(s, "status", done[0].run_id)
        assert shown.returncode == 0, shown.stderr
        assert "state: COMPLETED" in shown.stdout and "expired" in shown.stdout
        replayed = cli(s, "replay", done[0].run_id, "--workflow", "tests.workflows:FLAKY_LONG")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "expired" in replayed.stderr
        # A rollback needs the run's state: refused at once, saying why (not sent, and not waited for).
        refused = cli(s, "runs", "rollback", done[0].run_id, "--reason", "test", "--timeout", "30")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "expired" in refused.stderr and "rollback needs the run's state" in refused.stderr

        # Re-submissions: the same input is a duplicate, a different one a dead-lettered conflict; neither runs.
        p = partition_for(done[1].run_id, s.partitions)
        after = next(o for i in range(100, 1000) if partition_for((o := order(f"O{i:05d}")).run_id, s.partitions) == p)
        produce_inputs(s, FLAKY_LONG, [done[1], order(done[2].record["order_id"], amount=99.0), after])
        letters = wait_for(
            lambda: [
                d for d in read_topic(s, Topics(s.namespace).dead_letters) if d["error_type"] == "ExpiredRunConflict"
            ],
            30,
            "the conflicting re-submission dead-lettered",
        )
        assert letters[0]["run_id"] == done[2].run_id and "expired" in letters[0]["reason"]
        wait_for(lambda: after.run_id in {o["run_id"] for o in outcomes(s)}, 30, "the run after the duplicate")
        assert worker.failed is None
    finally:
        worker.stop()
        worker.join(20)
    written = Counter(o["run_id"] for o in outcomes(s))
    assert all(written[r] == 1 for r in ids), f"an expired run ran twice: {written}"

    # RocksDB dropped the states: only markers remain of the finished runs.
    table = RunTable(s.state_dir / s.namespace / s.worker_name, Topics(s.namespace).run_changelog)
    try:
        for run_id in ids:
            p = partition_for(run_id, s.partitions)
            assert table.get(p, run_id) is None and table.expired(p, run_id) is not None
        assert table.get(partition_for(waiting.run_id, s.partitions), waiting.run_id) is not None
    finally:
        table.close()

    # A worker on a wiped state directory restores the markers from the changelog, and forgets them.
    shutil.rmtree(s.state_dir)
    short = dataclasses.replace(s, expired_marker_s=0.5)
    worker = Worker(short, [FLAKY_LONG]).start()
    try:
        wait_for(
            lambda: all(changelog(s)[0].get(r, "absent") is None for r in ids) or worker.failed,
            60,
            "every expired run forgotten with a tombstone",
        )
        assert worker.failed is None
    finally:
        worker.stop()
        worker.join(20)
    latest, tombstones = changelog(s)
    assert tombstones >= len(ids)
    assert isinstance(latest[waiting.run_id], RunState), "a run in flight is never expired"

    # Rebuilt from the changelog alone, the run table holds nothing of them: a tombstone is a deletion.
    rebuilt = RunTable(s.state_dir / "rebuilt", Topics(s.namespace).run_changelog)
    try:
        rebuilt.restore(s, list(range(s.partitions)))
        for run_id in ids:
            p = partition_for(run_id, s.partitions)
            assert rebuilt.get(p, run_id) is None and rebuilt.expired(p, run_id) is None
        assert rebuilt.get(partition_for(waiting.run_id, s.partitions), waiting.run_id) is not None
    finally:
        rebuilt.close()
    shown = cli(s, "status", done[3].run_id)
    assert shown.returncode == 0 and "expired" in shown.stdout, shown.stdout + shown.stderr


def test_an_expired_run_cannot_be_redriven(settings: Settings) -> None:
    s = dataclasses.replace(settings, run_retention_s=1.0, expired_marker_s=600.0)
    failed = accept(FAILING, {"order_id": "X00000", "customer": "c1", "amount": 1.0})
    worker = Worker(s, [FAILING]).start()
    try:
        produce_inputs(s, FAILING, [failed])
        wait_for(lambda: isinstance(changelog(s)[0].get(failed.run_id), ExpiredRun) or worker.failed, 60, "expiry")
        assert worker.failed is None
    finally:
        worker.stop()
        worker.join(20)
    letter = next(d for d in read_topic(s, Topics(s.namespace).dead_letters) if d["run_id"] == failed.run_id)
    refused = cli(s, "dlq", "redrive", letter["dead_letter_id"], "--timeout", "1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "expired" in refused.stdout and "cannot redrive" in refused.stdout
