"""Admission: how many runs an orchestrator has in flight, and the inputs that wait for room.

An orchestrator keeps at most ``Settings.max_runs_in_flight`` live runs
(RUNNING or COMPENSATING, counted from the run table's live index). An input
that would start a run past that is *held*: kept in memory with every later
record of its partition, in order, its offset uncommitted and its partition
paused (nothing more is fetched, nothing is fetched twice). When runs end,
held inputs go first. A crash loses nothing: held inputs were never
committed, so the partition's next owner reads them again. A run that was
held starts, and its latency budget counts, from its admission.

The same holding keeps order across topics after a take-over. Records whose
writes were made before a crash, but whose state was not, are applied again
(:mod:`streams.recovery`); until the inputs that start runs are re-applied
that far, a step result could arrive for a run the table does not know yet,
and be ignored for good. So a partition being *replayed* holds its records
of later-ranked topics (run controls after run inputs, step results after
both) until the earlier-ranked ones have been applied up to their replay
offsets. Inputs below those offsets were admitted before the crash and are
not held for room again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from confluent_kafka import Consumer, Message, TopicPartition

Where = tuple[str, int]


class Admission:
    """The in-flight count and the held inputs of one orchestrator."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: dict[int, set[str]] = {}  # run ids in flight, by partition
        self.held: dict[Where, deque[Message]] = {}
        self._was_held: set[tuple[str, int, int]] = set()
        self._held_before: set[Where] = set()
        self._room = 0
        self.ranks: dict[str, int] = {}  # topic -> its place in a replay (streams.orchestrator sets it)
        self.replaying: dict[int, dict[str, int]] = {}  # partition -> topic -> offset to re-apply up to
        self._replayed_below: dict[Where, int] = {}
        self._released = False

    @property
    def in_flight(self) -> int:
        return sum(len(runs) for runs in self.live.values())

    def waiting(self) -> bool:
        """Whether held inputs could go in now (the loop then processes even without new records)."""
        return bool(self.held) and (self.in_flight < self.limit or self._released)

    def take_over(self, partition: int, live: set[str]) -> None:
        self.live[partition] = live

    def drop(self, topic: str, partition: int) -> None:
        """A partition was revoked: forget its runs and its held inputs (uncommitted: its new owner reads them)."""
        self.live.pop(partition, None)
        self.held.pop((topic, partition), None)
        self.replaying.pop(partition, None)
        self._replayed_below.pop((topic, partition), None)

    def replay(self, partition: int, replay_to: Mapping[str, int]) -> None:
        """Taken over: hold later-ranked topics of ``partition`` until earlier ones are applied to ``replay_to``."""
        ends = {t: o for t, o in replay_to.items() if t in self.ranks}
        if ends:
            self.replaying[partition] = ends
            self._replayed_below.update({(t, partition): o for t, o in ends.items()})

    def blocked(self, msg: Message) -> bool:
        """Whether ``msg`` must wait for earlier-ranked records of its partition to be applied again."""
        ends = self.replaying.get(msg.partition() or 0)
        if not ends:
            return False
        rank = self.ranks.get(msg.topic() or "", 0)
        return any(self.ranks[t] < rank for t in ends)

    def hold(self, msg: Message) -> None:
        """Keep ``msg``, and every later record of its partition, until its turn comes."""
        self.held.setdefault((msg.topic() or "", msg.partition() or 0), deque()).append(msg)

    def was_admitted(self, msg: Message) -> bool:
        """Whether ``msg`` is below its replay offset: it started its run before the crash, room or not."""
        below = self._replayed_below.get((msg.topic() or "", msg.partition() or 0))
        return below is not None and (msg.offset() or 0) < below

    def applied(self, msg: Message) -> None:
        """``msg`` was applied: a replay that reached its offsets ends."""
        p, topic = msg.partition() or 0, msg.topic() or ""
        ends = self.replaying.get(p)
        if ends is None or topic not in ends or (msg.offset() or 0) + 1 < ends[topic]:
            return
        del ends[topic]
        if not ends:
            del self.replaying[p]
            self._released = True

    def batch(self, msgs: list[Message]) -> list[Message]:
        """Start a batch: the held inputs first, then ``msgs``; the room is what the limit leaves."""
        waiting = [m for queue in self.held.values() for m in queue]
        self._held_before = set(self.held)
        self._was_held = {(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in waiting}
        self.held = {}
        self._released = False
        self._room = self.limit - self.in_flight
        return [*waiting, *msgs]

    def behind_held(self, msg: Message) -> bool:
        """Keep ``msg`` if an earlier input of its partition waits (order within a partition); True if kept."""
        where = (msg.topic() or "", msg.partition() or 0)
        if where in self.held:
            self.held[where].append(msg)
            return True
        return False

    def admit(self, msg: Message) -> bool | None:
        """Admit the input that starts a run: None if there is no room (it is held), else whether it had been held."""
        if self._room <= 0:
            self.held[(msg.topic() or "", msg.partition() or 0)] = deque([msg])
            return None
        self._room -= 1
        return (msg.topic() or "", msg.partition() or 0, msg.offset() or 0) in self._was_held

    def settled(self, partition: int, run_id: str, live: bool) -> None:
        """A run's state is durable: count it in flight, or not."""
        if live:
            self.live.setdefault(partition, set()).add(run_id)
        else:
            self.live.get(partition, set()).discard(run_id)

    def pause_or_resume(self, consumer: Consumer) -> list[Where]:
        """Pause partitions that now hold inputs; resume those whose held inputs all went in. Returns the paused."""
        now_held = set(self.held)
        newly = now_held - self._held_before
        if newly:
            consumer.pause([TopicPartition(t, p) for t, p in newly])
        freed = self._held_before - now_held
        if freed:
            consumer.resume([TopicPartition(t, p) for t, p in freed])
        return sorted(newly)
