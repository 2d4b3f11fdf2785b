"""Admission: how many runs an orchestrator has in flight, and the inputs that wait for room.

An orchestrator keeps at most ``Settings.max_runs_in_flight`` live runs
(RUNNING or COMPENSATING, counted from the run table's live index). An input
that would start a run past that is *held*: kept in memory with every later
record of its partition, in order, its offset uncommitted and its partition
paused (nothing more is fetched, nothing is fetched twice). When runs end,
held inputs go first. A crash loses nothing: held inputs were never
committed, so the partition's next owner reads them again. A run that was
held starts, and its latency budget counts, from its admission.
"""

from __future__ import annotations

from collections import deque

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

    @property
    def in_flight(self) -> int:
        return sum(len(runs) for runs in self.live.values())

    def waiting(self) -> bool:
        """Whether held inputs could go in now (the loop then processes even without new records)."""
        return bool(self.held) and self.in_flight < self.limit

    def take_over(self, partition: int, live: set[str]) -> None:
        self.live[partition] = live

    def drop(self, topic: str, partition: int) -> None:
        """A partition was revoked: forget its runs and its held inputs (uncommitted: its new owner reads them)."""
        self.live.pop(partition, None)
        self.held.pop((topic, partition), None)

    def batch(self, msgs: list[Message]) -> list[Message]:
        """Start a batch: the held inputs first, then ``msgs``; the room is what the limit leaves."""
        waiting = [m for queue in self.held.values() for m in queue]
        self._held_before = set(self.held)
        self._was_held = {(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in waiting}
        self.held = {}
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
