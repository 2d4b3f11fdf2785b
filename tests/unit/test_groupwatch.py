"""The group watch tells a wedged rebalance from a healthy one, an outage and a busy member."""

from __future__ import annotations

import json

from streams.groupwatch import GroupWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stats(state: str, join_state: str) -> str:
    return json.dumps({"name": "c", "cgrp": {"state": state, "join_state": join_state, "assignment_size": 0}})


def _feed(watch: GroupWatch, clock: Clock, state: str, join_state: str, seconds: int) -> None:
    for _ in range(seconds):
        watch.on_stats(_stats(state, join_state))
        clock.now += 1.0


def test_a_member_rebalancing_past_the_limit_with_its_coordinator_up_is_stuck() -> None:
    clock = Clock()
    watch = GroupWatch("g", stuck_after_s=10, clock=clock)
    _feed(watch, clock, "up", "wait-sync", 10)
    assert not watch.stuck
    _feed(watch, clock, "up", "wait-join", 3)
    assert watch.stuck
    assert watch.stuck_for_s > 10


def test_a_steady_reading_clears_it_even_with_no_partitions() -> None:
    clock = Clock()
    watch = GroupWatch("g", stuck_after_s=10, clock=clock)
    _feed(watch, clock, "up", "wait-sync", 8)
    _feed(watch, clock, "up", "steady", 1)  # steady with an empty assignment: more members than partitions
    _feed(watch, clock, "up", "wait-join", 8)
    assert not watch.stuck
    assert watch.stuck_for_s < 10


def test_time_without_a_coordinator_is_an_outage_not_a_wedge() -> None:
    clock = Clock()
    watch = GroupWatch("g", stuck_after_s=10, clock=clock)
    for _ in range(5):
        _feed(watch, clock, "up", "wait-join", 3)
        _feed(watch, clock, "query-coord", "init", 3)
    assert not watch.stuck


def test_a_member_busy_between_readings_is_not_stuck() -> None:
    clock = Clock()
    watch = GroupWatch("g", stuck_after_s=10, clock=clock)
    _feed(watch, clock, "up", "wait-assign-call", 2)
    clock.now += 60  # in its assignment callback (a long take-over scan): no statistics meanwhile
    assert not watch.stuck
    _feed(watch, clock, "up", "steady", 1)
    assert not watch.stuck


def test_statistics_without_a_group_or_unreadable_change_nothing() -> None:
    clock = Clock()
    watch = GroupWatch("g", stuck_after_s=1, clock=clock)
    _feed(watch, clock, "up", "wait-join", 3)
    watch.on_stats("{not json")
    watch.on_stats(json.dumps({"name": "producer"}))
    assert watch.stuck
