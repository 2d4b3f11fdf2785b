"""SIGKILL the worker while it rolls a completed run back: a restarted worker finishes the rollback exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import Settings
from tests.conftest import ROOT, WorkerProcesses, wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

SAGA = ("--workflow", "tests.workflows:SAGA")

POINTS = ["orchestrator.before_outputs", "orchestrator.after_outputs", "orchestrator.after_changelog"]


@pytest.mark.parametrize("point", POINTS)
def test_a_rollback_killed_midway_completes_exactly_once(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path, point: str
) -> None:
    fixed = tmp_path / "notification-service-fixed"
    fixed.touch()  # notify succeeds: every run completes
    env = {"TEST_FIXED_FILE": str(fixed)}
    orders = sample_orders(3, prefix="RK")
    run_ids = {o.run_id for o in orders}
    first = workers.start("a", *SAGA, env=env)
    produce_orders(settings, orders)
    wait_for(lambda: {d["run_id"] for d in outcomes(settings)} >= run_ids or None, 60, "three completed runs")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, workers.log("a")

    # The first batch this worker writes is the rollback's: it dies there.
    doomed = workers.start("a", *SAGA, env={**env, "DURABLE_CRASH_AT": f"{point}:1"})
    target = orders[0].run_id
    cli_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURABLE_NAMESPACE": settings.namespace,
    }
    asked = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "runs", "rollback", target, "--reason", "chaos", "--timeout", "90"],
        cwd=ROOT,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: doomed.poll() is not None or None, 60, f"the worker to die at {point}")
    assert doomed.returncode == -signal.SIGKILL, workers.log("a")

    workers.start("a", *SAGA, env=env)  # same name: same local state dir
    out, err = asked.communicate(timeout=120)
    assert asked.returncode == 0, out + err

    def rolled_back() -> bool:
        kinds = [e["kind"] for e in journal(settings) if e["run_id"] == target]
        return (
            kinds.count("RUN_COMPENSATED") == 1 and len([o for o in outcomes(settings) if o["run_id"] == target]) == 2
        )

    wait_for(lambda: rolled_back() or None, 90, "the rollback to finish after the restart")
    events = sorted((e for e in journal(settings) if e["run_id"] == target), key=lambda e: e["seq"])
    undone = [e["step"] for e in events if e["kind"] == "COMPENSATION_SUCCEEDED"]
    assert undone == ["charge", "reserve"], undone
    assert [e["kind"] for e in events].count("RUN_COMPENSATING") == 1
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)
