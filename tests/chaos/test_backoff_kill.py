"""SIGKILL while retries wait out their backoff, or while one fires: each retry still fires exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from typing import Any

import pytest

from streams.config import Settings
from streams.topics import Topics
from tests.conftest import WorkerProcesses, read_topic, wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

FLAKY_LONG = ("--workflow", "tests.workflows:FLAKY_LONG")
FAIL_ONCE = {"TEST_FAIL_ATTEMPTS": "1", "TEST_FLAKY_PREFIX": ""}


def _waiting(settings: Settings, run_ids: set[str]) -> dict[str, int] | None:
    """Each run's retry due time, once every run is waiting out its backoff."""
    due = {
        e["run_id"]: json.loads(e["detail_json"])["due_at_ms"]
        for e in journal(settings)
        if e["kind"] == "STEP_RETRY_WAITING" and e["run_id"] in run_ids
    }
    return due if set(due) == run_ids else None


def _assert_each_retry_fired_once(settings: Settings, run_ids: set[str]) -> None:
    scheduled = Counter(
        e["run_id"] for e in journal(settings) if e["kind"] == "STEP_SCHEDULED" and e["step"] == "flaky" and e["attempt"] == 2
    )
    assert scheduled == dict.fromkeys(run_ids, 1), scheduled
    commands = Counter(c["command_id"] for c in read_topic(settings, Topics(settings.namespace).commands))
    assert all(commands[f"{r}/flaky/2"] == 1 for r in run_ids), commands
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)


def _all_decided(settings: Settings, run_ids: set[str]) -> bool:
    return {d["run_id"] for d in outcomes(settings)} >= run_ids


def test_sigkill_during_backoff_then_a_new_worker_fires_each_retry_once(
    settings: Settings, workers: WorkerProcesses
) -> None:
    orders = sample_orders(6, prefix="B")
    run_ids = {c.run_id for c in orders}
    a = workers.start("a", *FLAKY_LONG, env=FAIL_ONCE)
    produce_orders(settings, orders)
    due = wait_for(lambda: _waiting(settings, run_ids), 60, "every run to wait out its backoff")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    assert not _all_decided(settings, run_ids)

    # Let every retry fall due while no worker runs: they must fire as soon as one starts.
    wait_for(lambda: time.time() * 1000 > max(due.values()), 30, "the retries to fall due")
    workers.start("b", *FLAKY_LONG, env=FAIL_ONCE)  # a new worker, with no local state
    wait_for(lambda: _all_decided(settings, run_ids), 90, "every run to finish on the new worker")
    _assert_each_retry_fired_once(settings, run_ids)


@pytest.mark.parametrize("point", ["orchestrator.after_timer_outputs", "orchestrator.before_commit"])
def test_crash_while_firing_a_retry_does_not_fire_it_twice(
    settings: Settings, workers: WorkerProcesses, point: str
) -> None:
    orders = sample_orders(6, prefix="T")
    run_ids = {c.run_id for c in orders}
    env: dict[str, Any] = {**FAIL_ONCE}
    # before_commit is reached by every batch; its 4th visit is after the intake, result and retry batches.
    crash = f"{point}:1" if point.endswith("timer_outputs") else f"{point}:4"
    first = workers.start("a", *FLAKY_LONG, env={**env, "DURABLE_CRASH_AT": crash})
    produce_orders(settings, orders)
    wait_for(lambda: first.poll() is not None, 60, f"worker to die at {point}")
    assert first.returncode == -signal.SIGKILL, workers.log("a")
    workers.start("a", *FLAKY_LONG, env=env)  # same name: its RocksDB is behind the log it wrote
    wait_for(lambda: _all_decided(settings, run_ids), 90, "every run to finish after the restart")
    _assert_each_retry_fired_once(settings, run_ids)
