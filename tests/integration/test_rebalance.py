"""Workers join and leave while orders flow: nothing is lost or doubled."""

from __future__ import annotations

import signal

from streams.config import Settings
from tests.conftest import WorkerProcesses, wait_for
from tests.helpers import assert_exactly_once, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC


def test_second_worker_joins_then_first_leaves(settings: Settings, workers: WorkerProcesses) -> None:
    env = {"TEST_STEP_DELAY_S": "0.05"}
    slow = ("--workflow", "tests.workflows:SLOW")
    waves = [sample_orders(15, prefix=f"W{i}-") for i in range(3)]
    decided = lambda n: len({d["run_id"] for d in outcomes(settings)}) >= n  # noqa: E731

    a = workers.start("a", *slow, env=env)
    produce_orders(settings, waves[0])
    wait_for(lambda: decided(15), 60, "wave 1 on one worker")

    workers.start("b", *slow, env=env)
    # Wait for b to own partitions before a leaves: the embedded broker wedges a
    # group whose leader leaves in the middle of a rebalance (notes/broker-facts.md).
    wait_for(lambda: "assigned" in workers.log("b"), 60, "b to be given partitions")
    produce_orders(settings, waves[1])
    wait_for(lambda: decided(30), 60, "wave 2 on two workers")

    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0, workers.log("a")
    produce_orders(settings, waves[2])
    wait_for(lambda: decided(45), 60, "wave 3 on b alone")
    taken_over = [line for line in workers.log("b").splitlines() if "assigned" in line]
    assert len({line.split("partition ")[1].split()[0] for line in taken_over}) == 4, "b ends up owning every partition"
    assert_exactly_once(settings, {c.run_id for wave in waves for c in wave}, OUTPUT_TOPIC)



def _leader_leaves_while_b_joins(
    settings: Settings, workers: WorkerProcesses, env_a: dict[str, str], env_b: dict[str, str]
) -> WorkerProcesses:
    """a leads the group; b starts; a leaves (SIGTERM) as soon as b's groups start rebalancing; b must decide all."""
    slow = ("--workflow", "tests.workflows:SLOW")
    base = {"TEST_STEP_DELAY_S": "0.05"}
    waves = [sample_orders(10, prefix=f"L{i}-") for i in range(2)]
    decided = lambda n: len({d["run_id"] for d in outcomes(settings)}) >= n  # noqa: E731

    a = workers.start("a", *slow, env={**base, **env_a})
    produce_orders(settings, waves[0])
    wait_for(lambda: decided(10), 60, "wave 1 on a")
    workers.start("b", *slow, env={**base, **env_b})
    wait_for(lambda: "rebalancing" in workers.log("b") or "assigned" in workers.log("b"), 60, "b to join")
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0, workers.log("a")
    produce_orders(settings, waves[1])
    wait_for(lambda: decided(20), 90, "wave 2 on b alone")
    assert_exactly_once(settings, {c.run_id for wave in waves for c in wave}, OUTPUT_TOPIC)
    return workers


NO_WATCHDOG = {"DURABLE_GROUP_STUCK_S": "100000"}


def test_a_leader_leaving_while_a_member_joins_waits_for_the_rebalance(
    settings: Settings, workers: WorkerProcesses
) -> None:
    """Leaving mid-rebalance wedges the embedded broker's group; a leaving worker lets the rebalance finish first.

    The group watch is off here: b gets its partitions because a did not leave in the middle of b's join.
    """
    _leader_leaves_while_b_joins(settings, workers, NO_WATCHDOG, NO_WATCHDOG)
    assert "re-creating" not in workers.log("b")


def test_a_wedged_group_is_recreated_with_its_offsets(settings: Settings, workers: WorkerProcesses) -> None:
    """a leaves mid-rebalance on purpose (no settling): b's group watch finds it stuck and re-creates the group."""
    _leader_leaves_while_b_joins(settings, workers, {"DURABLE_LEAVE_LIMIT_S": "0"}, {"DURABLE_GROUP_STUCK_S": "5"})
    assert "deleted and re-created with its" in workers.log("b")
