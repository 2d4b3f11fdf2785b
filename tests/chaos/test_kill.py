"""SIGKILL a worker while runs are in flight; a new worker finishes them, exactly once.

Crash points (streams/chaos.py) kill the worker at exact moments of the
orchestrator's write sequence and during a step; an external SIGKILL hits
wherever the worker happens to be. After each: every run completes, no
decision is on the decisions topic twice, every transition is in the journal
once, and no step attempt is scheduled twice.
"""

from __future__ import annotations

import shutil
import signal

import pytest

from schemas.models import RunStatus
from streams.config import Settings
from streams.runtable import RunTable
from streams.topics import Topics
from tests.conftest import WorkerProcesses, read_topic, wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

SLOW = ("--workflow", "tests.workflows:SLOW")

CRASH_POINTS = [
    "executor.during_step",  # a step is running
    "orchestrator.before_outputs",  # a result consumed and applied in memory, next command not written
    "orchestrator.after_outputs",  # next commands / journal written, state not
    "orchestrator.after_changelog",  # state written to the changelog, local RocksDB not
    "orchestrator.before_commit",  # state written everywhere, input offsets not committed
]


def _all_decided(settings: Settings, run_ids: set[str]) -> bool:
    return {d["run_id"] for d in outcomes(settings)} >= run_ids


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_point_loses_nothing(settings: Settings, workers: WorkerProcesses, point: str) -> None:
    orders = sample_orders(24, prefix="K")
    run_ids = {c.run_id for c in orders}
    first = workers.start("a", *SLOW, env={"DURABLE_CRASH_AT": f"{point}:2", "TEST_STEP_DELAY_S": "0.05"})
    produce_orders(settings, orders)
    wait_for(lambda: first.poll() is not None, 60, f"worker to die at {point}")
    assert first.returncode == -signal.SIGKILL, workers.log("a")
    assert not _all_decided(settings, run_ids), "the crash must hit while runs are in flight"

    workers.start("a", *SLOW, env={"TEST_STEP_DELAY_S": "0.05"})  # same name: same local state dir
    wait_for(lambda: _all_decided(settings, run_ids), 90, "every run to be decided after the restart")
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)


def test_sigkill_of_one_of_two_workers_mid_flight(settings: Settings, workers: WorkerProcesses) -> None:
    orders = sample_orders(40, prefix="X")
    run_ids = {c.run_id for c in orders}
    env = {"TEST_STEP_DELAY_S": "1.0"}
    a = workers.start("a", *SLOW, env=env)
    workers.start("b", *SLOW, env=env)
    produce_orders(settings, orders)
    results = Topics(settings.namespace).results
    wait_for(lambda: len(read_topic(settings, results)) >= 10, 60, "the first step results")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    assert not _all_decided(settings, run_ids)
    wait_for(lambda: _all_decided(settings, run_ids), 90, "the survivor to finish every run")
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)


def test_state_comes_back_from_the_changelog_when_rocksdb_is_deleted(
    settings: Settings, workers: WorkerProcesses
) -> None:
    orders = sample_orders(12, prefix="R")
    run_ids = {c.run_id for c in orders}
    a = workers.start("a", *SLOW, env={"TEST_STEP_DELAY_S": "0.01"})
    produce_orders(settings, orders)
    wait_for(lambda: _all_decided(settings, run_ids), 60, "the first runs")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    state_dir = settings.state_dir / settings.namespace / "a"
    assert state_dir.exists()
    shutil.rmtree(state_dir)

    b = workers.start("a", *SLOW, env={"TEST_STEP_DELAY_S": "0.01"})
    # The same orders again: only a restored state knows these runs are done.
    produce_orders(settings, orders)
    fresh = sample_orders(4, prefix="S")
    produce_orders(settings, fresh)
    wait_for(lambda: _all_decided(settings, run_ids | {c.run_id for c in fresh}), 60, "the fresh runs")
    b.send_signal(signal.SIGTERM)
    assert b.wait(30) == 0, workers.log("a")
    assert_exactly_once(settings, run_ids | {c.run_id for c in fresh}, OUTPUT_TOPIC)
    started = [e for e in journal(settings) if e["kind"] == "RUN_STARTED" and e["run_id"] in run_ids]
    assert len(started) == len(run_ids), "re-sent orders must not start new runs"

    table = RunTable(state_dir, Topics(settings.namespace).run_changelog)
    try:
        from streams.kafka import partition_for

        for run_id in run_ids:
            state = table.get(partition_for(run_id, settings.partitions), run_id)
            assert state is not None and state.status is RunStatus.COMPLETED, run_id
    finally:
        table.close()


def test_results_written_before_their_runs_state_wait_for_the_run_to_be_reapplied(
    settings: Settings, workers: WorkerProcesses
) -> None:
    """The orchestrator dies after writing the first commands but before their runs' state; a separate
    executor runs them, so their results are on the topic before the restarted orchestrator re-applies the
    inputs that start those runs. It must hold the results back until then (streams.admission), or they
    would be ignored as results for unknown runs and the runs would wait for good."""
    orders = sample_orders(24, prefix="H")
    run_ids = {c.run_id for c in orders}
    workers.start("e", *SLOW, "--role", "executor")
    o = workers.start("o", *SLOW, "--role", "orchestrator", env={"DURABLE_CRASH_AT": "orchestrator.after_outputs:1"})
    produce_orders(settings, orders)
    wait_for(lambda: o.poll() is not None, 60, "the orchestrator to die after its first outputs")
    assert o.returncode == -signal.SIGKILL, workers.log("o")
    topics = Topics(settings.namespace)
    wait_for(lambda: read_topic(settings, topics.results), 60, "the executor to answer the commands")
    assert not read_topic(settings, topics.run_changelog), "the crash must come before any run state is written"

    workers.start("o", *SLOW, "--role", "orchestrator")  # same name: same local state dir
    wait_for(lambda: _all_decided(settings, run_ids), 90, "every run to be decided after the restart")
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)
