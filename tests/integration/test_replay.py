"""Replay on a real broker: a run from its journal, one step from a dead letter, a window in a sandbox; offsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from streams.config import Settings
from streams.offsets import committed
from streams.reading import read_all
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, WorkerProcesses, wait_for
from tests.helpers import decisions, outcomes, produce, produce_orders, sample_claims, sample_orders


def cli(settings: Settings, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def snapshot(settings: Settings) -> dict[str, int]:
    """Record counts of every topic of the namespace: replays must leave them as they were."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "snap", "log_level": 3})
    try:
        names = [t for t in c.list_topics(timeout=10).topics if t.startswith(f"{settings.namespace}.")]
    finally:
        c.close()
    return {t: len(read_all(settings, t)) for t in sorted(names)}


@pytest.fixture
def worker_of(settings: Settings) -> Iterator[Any]:
    started: list[Worker] = []

    def start(spec: str) -> Worker:
        worker = Worker(settings, load_workflows([spec])).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        worker.join(15)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def test_a_failing_run_replays_to_its_failure_and_after_a_fix_to_a_success(
    settings: Settings, worker_of: Any, tmp_path: Path
) -> None:
    [order] = sample_orders(1, prefix="RP")
    worker = worker_of("tests.workflows:SAGA")
    produce_orders(settings, [order])
    wait_for(lambda: outcomes(settings) or worker.failed, 60, "the run's decision")
    worker.stop()
    worker.join(15)
    before = snapshot(settings)

    same = cli(settings, "replay", order.run_id, "--workflow", "tests.workflows:SAGA")
    assert same.returncode == 3, same.stdout + same.stderr
    assert same.stdout.count("failure reproduced") >= 3 and "different" not in same.stdout
    assert "recorded COMPENSATED" in same.stdout and "would not complete" in same.stdout

    fixed = cli(settings, "replay", order.run_id, "--workflow", "tests.workflows:SAGA_FIXED")
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr
    assert "different" in fixed.stdout and "would complete" in fixed.stdout
    assert '-  "error": "ConnectionError: notification service refused the message"' in fixed.stdout
    assert '"status":"DONE"' in fixed.stdout  # the output it would give

    # A run export replays without the broker's journal, to the same verdicts.
    exported = tmp_path / "run.json"
    assert cli(settings, "runs", "export", order.run_id, "-o", str(exported)).returncode == 0
    offline = cli(settings, "replay", "--file", str(exported), "--workflow", "tests.workflows:SAGA")
    assert offline.returncode == 3, offline.stdout + offline.stderr

    # One step against the known-bad input of its dead letter: the failure, with its traceback.
    bad = tmp_path / "bad.json"
    shown = cli(settings, "dlq", "show", f"{order.run_id}/notify/run/3", "--input")
    bad.write_text(shown.stdout)
    step = cli(
        settings,
        "replay",
        "--step",
        "notify",
        "--input",
        str(bad),
        "--run",
        order.run_id,
        "--workflow",
        "tests.workflows:SAGA",
    )
    assert step.returncode == 1 and "ConnectionError: notification service refused the message" in step.stderr
    assert "Traceback" in step.stderr
    step_fixed = cli(
        settings, "replay", "--step", "notify", "--input", str(bad), "--workflow", "tests.workflows:SAGA_FIXED"
    )
    assert step_fixed.returncode == 0 and json.loads(step_fixed.stdout) == {"notified": True}

    assert snapshot(settings) == before, "a replay wrote to the namespace's topics"


def test_an_fnol_run_replays_the_same_including_its_recorded_fraud_outage(
    settings: Settings, worker_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0.5")
    claims = sample_claims(6, prefix="FR")
    worker = worker_of("processors.fnol.workflow:FNOL")
    produce(settings, claims)
    wait_for(lambda: len(decisions(settings)) >= 6 or worker.failed, 90, "six decisions")
    replays = {c.run_id: cli(settings, "replay", c.run_id) for c in claims}
    for run_id, done in replays.items():
        assert done.returncode in (0, 3), f"{run_id}: {done.stdout}{done.stderr}"
        assert "different" not in done.stdout and "new failure" not in done.stdout
    # With half the fraud calls failing, some run recorded an outage; replay reproduced it from the recorded draw.
    assert any(d.returncode == 3 and "FraudServiceUnavailable" in d.stdout for d in replays.values())


def test_a_run_recorded_at_a_fraud_failure_rate_replays_as_recorded_from_a_shell_without_it(
    settings: Settings, workers: WorkerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 13, "replay anywhere": the worker ran with the variable, the replaying shell does not have it.
    monkeypatch.delenv("DURABLE_FNOL_FRAUD_FAILURE_RATE", raising=False)
    claims = sample_claims(8, prefix="RA")
    workers.start("w1", "--workflow", "processors.fnol.workflow:FNOL", env={"DURABLE_FNOL_FRAUD_FAILURE_RATE": "0.3"})
    produce(settings, claims)
    wait_for(lambda: len(decisions(settings)) >= len(claims), 120, "a decision for every claim")
    replays = {c.run_id: cli(settings, "replay", c.run_id) for c in claims}
    for run_id, done in replays.items():
        assert done.returncode in (0, 3), f"{run_id}: {done.stdout}{done.stderr}"
        assert "different" not in done.stdout and "new failure" not in done.stdout, done.stdout
        assert "fraud_failure_rate: recorded 0.3, here 0.0" in done.stdout, done.stdout
        assert "the replay uses the recorded ones" in done.stdout
    # Runs without a failed attempt replay as all same (exit 0); recorded failures (a fraud outage, an
    # unreachable claimant) are reproduced (exit 3), never new.
    assert any(d.returncode == 0 for d in replays.values())
    for d in replays.values():
        assert d.returncode == 0 or "failure reproduced" in d.stdout


def test_offsets_reset_dry_run_execute_and_by_datetime(settings: Settings) -> None:
    topic = f"{settings.namespace}.events"
    ensure_topics(settings, [topic])
    base = int(time.time() * 1000) - 60_000
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "log_level": 3})
    for i in range(12):  # partition i % 4, timestamps a second apart
        p.produce(topic, value=f"e{i}".encode(), partition=i % 4, timestamp=base + i * 1000)
    p.flush(10)
    group = f"{settings.namespace}.downstream"
    c = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 12 and time.monotonic() < deadline:
        seen += sum(1 for m in c.consume(100, 0.5) if not m.error())
    c.commit(asynchronous=False)
    at_end = committed(settings, group)
    assert at_end == {(topic, q): 3 for q in range(4)}

    # While the consumer is in the group, executing is refused.
    refused = cli(settings, "offsets", "reset", "--group", group, "--topic", topic, "--to-earliest", "--execute")
    assert refused.returncode == 1 and "active" in refused.stderr
    c.close()

    dry = cli(settings, "offsets", "reset", "--group", group, "--topic", topic, "--to-earliest", "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout
    assert committed(settings, group) == at_end

    shifted = cli(settings, "offsets", "reset", "--group", group, "--topic", "events", "--shift-by", "-2", "--execute")
    assert shifted.returncode == 0, shifted.stderr
    assert committed(settings, group) == {(topic, q): 1 for q in range(4)}

    # 5.5 s after base: records 6..11 are at or after it; per partition q they are at offsets where i >= 6.
    when = _iso(base + 5_500)
    by_time = cli(settings, "offsets", "reset", "--group", group, "--topic", topic, "--to-datetime", when, "--execute")
    assert by_time.returncode == 0, by_time.stderr
    expected = {(topic, q): min(k for k in range(3) if q + 4 * k >= 6) for q in range(4)}
    assert committed(settings, group) == expected
    # A time after every record lands on the end; before every record, on the start.
    cli(
        settings,
        "offsets",
        "reset",
        "--group",
        group,
        "--topic",
        topic,
        "--to-datetime",
        _iso(base + 60_000),
        "--execute",
    )
    assert committed(settings, group) == {(topic, q): 3 for q in range(4)}
    cli(
        settings,
        "offsets",
        "reset",
        "--group",
        group,
        "--topic",
        topic,
        "--to-datetime",
        _iso(base - 1_000),
        "--execute",
    )
    assert committed(settings, group) == {(topic, q): 0 for q in range(4)}
    # Re-consuming from there replays the records again.
    again = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "session.timeout.ms": 6000})
    again.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 12 and time.monotonic() < deadline:
        got += [m.value() or b"" for m in again.consume(100, 0.5) if not m.error()]
    again.close()
    assert sorted(got) == sorted(f"e{i}".encode() for i in range(12))


def test_a_window_replayed_in_a_sandbox_reports_same_and_changed_decisions(settings: Settings, worker_of: Any) -> None:
    claims = sample_claims(30, prefix="W")
    start = int(time.time() * 1000) - 1
    worker = worker_of("processors.fnol.workflow:FNOL")
    produce(settings, claims)
    end = int(time.time() * 1000) + 1
    wait_for(lambda: len(decisions(settings)) >= len(claims) or worker.failed, 90, "every decision")
    worker.stop()
    worker.join(15)
    glass = sum(1 for d in decisions(settings) if d["queue"] == "fast_track_glass")
    assert 0 < glass < len(claims)
    before = snapshot(settings)

    sandbox = f"{settings.namespace}-sandbox"
    done = cli(
        settings,
        "replay",
        "--from",
        _iso(start),
        "--to",
        _iso(end),
        "--sandbox",
        sandbox,
        "--workflow",
        "tests.workflows:FNOL_GLASS_RULE",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"same: {len(claims) - glass}  changed: {glass}  missing: 0  new: 0" in done.stdout
    assert "queue: 'fast_track_glass' -> 'glass_partner'" in done.stdout
    assert snapshot(settings) == before, "the sandbox replay wrote to production topics"
    assert len(read_all(settings, Topics(sandbox).name("decisions"))) == len(claims)

    nothing = cli(
        settings, "replay", "--from", _iso(end + 60_000), "--to", _iso(end + 120_000), "--sandbox", sandbox + "2"
    )
    assert nothing.returncode == 0 and "0 input record(s)" in nothing.stdout
    refused = cli(settings, "replay", "--from", _iso(start), "--to", _iso(end), "--sandbox", settings.namespace)
    assert refused.returncode == 2
