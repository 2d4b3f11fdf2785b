"""The executor's OffsetTracker: what offset it is safe to commit while commands finish out of order."""

from __future__ import annotations

import itertools

from streams.executor import OffsetTracker


def test_nothing_started_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0


def test_commit_point_is_the_next_offset_once_all_are_done() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(0, offset)
    for offset in (10, 11, 12):
        tracker.done(0, offset)
    assert tracker.committable() == {0: 13}  # Kafka commits the next offset to read
    assert tracker.in_flight() == 0


def test_commit_point_never_passes_an_in_flight_offset() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.started(0, offset)
    tracker.done(0, 11)
    tracker.done(0, 12)
    tracker.done(0, 13)
    assert tracker.committable() == {0: 10}  # 10 still runs: a crash must re-deliver it
    assert tracker.in_flight() == 1
    tracker.done(0, 10)
    assert tracker.committable() == {0: 14}


def test_out_of_order_completion_advances_to_the_lowest_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in range(100, 105):
        tracker.started(3, offset)
    assert tracker.committable() == {3: 100}
    tracker.done(3, 102)
    assert tracker.committable() == {}  # still 100: unchanged points are not repeated
    tracker.done(3, 100)
    assert tracker.committable() == {3: 101}
    tracker.done(3, 101)
    assert tracker.committable() == {3: 103}  # 102 was already done, 103 is not
    tracker.done(3, 104)
    assert tracker.committable() == {}
    tracker.done(3, 103)
    assert tracker.committable() == {3: 105}


def test_every_completion_order_is_safe_and_ends_at_the_end() -> None:
    offsets = [5, 6, 8, 9]  # 7 is a gap (e.g. a transaction marker): never started, never blocks
    for order in itertools.permutations(offsets):
        tracker = OffsetTracker()
        for offset in offsets:
            tracker.started(0, offset)
        unfinished = set(offsets)
        last = -1
        for offset in order:
            tracker.done(0, offset)
            unfinished.discard(offset)
            point = tracker.committable().get(0, last)
            assert point >= last, "the commit point never moves back"
            if unfinished:
                assert point <= min(unfinished), f"order {order}: committed {point} past in-flight {min(unfinished)}"
            last = point
        assert last == 10, order


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.started(0, 1)
    tracker.started(1, 50)
    tracker.started(1, 51)
    tracker.done(1, 50)
    tracker.done(1, 51)
    assert tracker.committable() == {0: 1, 1: 52}
    tracker.done(0, 1)
    assert tracker.committable() == {0: 2}
    assert tracker.in_flight() == 0


def test_work_started_after_a_commit_holds_the_next_point() -> None:
    tracker = OffsetTracker()
    tracker.started(0, 0)
    tracker.done(0, 0)
    assert tracker.committable() == {0: 1}
    tracker.started(0, 1)
    tracker.started(0, 2)
    tracker.done(0, 2)
    assert tracker.committable() == {}
    tracker.done(0, 1)
    assert tracker.committable() == {0: 3}


def test_done_twice_or_for_an_unknown_offset_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.started(0, 7)
    tracker.started(0, 8)
    tracker.done(0, 8)
    tracker.done(0, 8)
    tracker.done(0, 99)
    tracker.done(5, 1)  # a partition never started
    assert tracker.committable() == {0: 7}
    assert tracker.in_flight() == 1


def test_forget_drops_a_revoked_partition() -> None:
    tracker = OffsetTracker()
    for offset in (20, 21):
        tracker.started(0, offset)
    tracker.started(1, 5)
    tracker.done(0, 21)
    tracker.forget(0)
    assert tracker.in_flight() == 1
    assert tracker.committable() == {1: 5}  # nothing more for the revoked partition
    # A late delivery report for the revoked partition neither crashes nor resurrects it.
    tracker.done(0, 20)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 1


def test_a_reassigned_partition_starts_afresh() -> None:
    tracker = OffsetTracker()
    tracker.started(0, 40)
    tracker.done(0, 40)
    assert tracker.committable() == {0: 41}
    tracker.forget(0)
    # Re-assigned later (another member may have committed since): resume at the group's offset.
    tracker.started(0, 41)
    assert tracker.committable() == {0: 41}  # reported again: the old high-water mark was dropped
    tracker.done(0, 41)
    assert tracker.committable() == {0: 42}
