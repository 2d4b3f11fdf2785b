"""Deploying a new workflow version while runs are in flight: each run finishes on the version it started on.

V1 is a 4-step workflow, V2 the same with a step more and one retry policy
changed (tests/versioned.py); an outcome's ``steps`` says which one a run
finished on. Workers are ``durable worker`` processes, stopped with SIGKILL
where the deploy switches over, so the switch itself is a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

from streams import runlist
from streams.config import Settings
from tests.conftest import ROOT, WorkerProcesses, wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

V1 = ("--workflow", "tests.versioned:V1")
BOTH = ("--workflow", "tests.versioned:V1", "--workflow", "tests.versioned:V2")
V2_ONLY = ("--workflow", "tests.versioned:V2")
ENV = {"TEST_STEP_DELAY_S": "0.4"}


def _decided(settings: Settings) -> dict[str, dict[str, Any]]:
    return {o["run_id"]: o for o in outcomes(settings)}


def _started_on(settings: Settings) -> dict[str, str | None]:
    return {e["run_id"]: e.get("workflow_version") for e in journal(settings) if e["kind"] == "RUN_STARTED"}


def _run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _cli(settings: Settings, *args: str) -> str:
    done = _run_cli(settings, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _in_flight_on_v1(settings: Settings, run_ids: set[str]) -> bool:
    """Some of ``run_ids`` have a step result, and some are not decided: the deploy will hit runs mid-way."""
    decided = set(_decided(settings))
    running = [r for r in runlist.latest_states(settings) if r.run_id in run_ids and r.status == "RUNNING"]
    return len(running) >= 3 and not run_ids <= decided


def test_a_v1_run_completes_on_v1_after_v2_is_deployed_mid_run_while_new_runs_take_v2(
    settings: Settings, workers: WorkerProcesses
) -> None:
    old = sample_orders(12, prefix="P")
    old_ids = {o.run_id for o in old}
    a = workers.start("a", *V1, env=ENV)
    produce_orders(settings, old)
    wait_for(lambda: _in_flight_on_v1(settings, old_ids), 60, "V1 runs in flight")

    # The deploy: a worker with both versions joins, and the V1-only one is SIGKILLed mid-run.
    workers.start("b", *BOTH, env=ENV)
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    assert not old_ids <= set(_decided(settings)), "the switch must hit runs in flight"

    new = sample_orders(8, prefix="N")
    new_ids = {o.run_id for o in new}
    produce_orders(settings, new)
    wait_for(lambda: old_ids | new_ids <= set(_decided(settings)), 120, "every run, old and new, to finish")

    assert_exactly_once(settings, old_ids | new_ids, OUTPUT_TOPIC)
    decided, started_on = _decided(settings), _started_on(settings)
    assert {decided[r]["status"] for r in old_ids | new_ids} == {"DONE"}, "no run is failed by the deploy"
    assert {decided[r]["steps"] for r in old_ids} == {4}, "runs started on V1 finish on V1's four steps"
    assert {decided[r]["steps"] for r in new_ids} == {5}, "runs started after the deploy take V2"
    assert {started_on[r] for r in old_ids} == {"v1"} and {started_on[r] for r in new_ids} == {"v2"}
    listed = Counter((r.version, r.status) for r in runlist.latest_states(settings))
    assert listed == {("v1", "COMPLETED"): 12, ("v2", "COMPLETED"): 8}
    shown = _cli(settings, "status", sorted(old_ids)[0])
    assert "version v1" in shown, shown


def test_a_run_whose_version_no_worker_has_waits_visibly_and_completes_once_one_joins(
    settings: Settings, workers: WorkerProcesses
) -> None:
    old = sample_orders(8, prefix="Q")
    old_ids = {o.run_id for o in old}
    a = workers.start("a", *V1, env=ENV)
    produce_orders(settings, old)
    wait_for(lambda: _in_flight_on_v1(settings, old_ids), 60, "V1 runs in flight")
    a.send_signal(signal.SIGKILL)
    a.wait(10)

    # A worker without V1 takes the runs over: they wait, blocked, and are neither failed nor run on V2.
    b = workers.start("b", *V2_ONLY, env=ENV)
    unfinished = old_ids - set(_decided(settings))
    wait_for(
        lambda: {r.run_id for r in runlist.latest_states(settings) if r.blocked} == unfinished,
        90,
        "every unfinished V1 run to be blocked on its version",
    )
    assert "waits: version v1 of versioned is not loaded" in workers.log("b")
    listing = _cli(settings, "runs", "list", "--blocked")
    assert "v1" in listing and all(r in listing for r in unfinished), listing
    fresh = sample_orders(2, prefix="F")
    produce_orders(settings, fresh)  # meanwhile new runs start, and finish, on V2
    wait_for(lambda: {o.run_id for o in fresh} <= set(_decided(settings)), 60, "new runs to finish on V2")
    assert not unfinished & set(_decided(settings)), "a blocked run must not be finished on another version"

    b.send_signal(signal.SIGKILL)  # the fix: a worker with V1 loaded again replaces it
    b.wait(10)
    workers.start("c", *BOTH, env=ENV)
    wait_for(lambda: old_ids <= set(_decided(settings)), 120, "the blocked runs to finish once V1 is back")
    wait_for(lambda: not [r for r in runlist.latest_states(settings) if r.blocked], 30, "no run to be left blocked")
    decided = _decided(settings)
    assert {decided[r]["steps"] for r in old_ids} == {4} and {decided[r]["status"] for r in old_ids} == {"DONE"}
    assert {decided[o.run_id]["steps"] for o in fresh} == {5}
    assert_exactly_once(settings, old_ids | {o.run_id for o in fresh}, OUTPUT_TOPIC)


def test_the_deploy_check_catches_a_renamed_step_and_passes_a_patched_one(
    settings: Settings, workers: WorkerProcesses
) -> None:
    orders = sample_orders(6, prefix="D")
    run_ids = {o.run_id for o in orders}
    workers.start("a", *V1, env={"TEST_STEP_DELAY_S": "0.01"})
    produce_orders(settings, orders)
    wait_for(lambda: run_ids <= set(_decided(settings)), 60, "the recorded runs")

    renamed = _run_cli(
        settings, "replay", "--sample", "4", "--since", "2020-01-01", "--workflow", "tests.versioned:RENAMED"
    )
    assert renamed.returncode == 1, renamed.stdout + renamed.stderr
    named = [r for r in run_ids if r in renamed.stdout]
    assert len(named) == 4, renamed.stdout
    assert "step 'c' was recorded but no longer exists" in renamed.stdout
    assert "step 'd' now depends on ['b', 'c_renamed']" in renamed.stdout
    assert "4 recorded run(s) replayed" in renamed.stderr and "4 would diverge" in renamed.stderr

    additive = _run_cli(settings, "replay", "--sample", "6", "--workflow", "tests.versioned:PATCHED")
    assert additive.returncode == 0, additive.stdout + additive.stderr
    assert "6 recorded run(s) replayed against versioned v2: 0 would diverge" in additive.stdout
