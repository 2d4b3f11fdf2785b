"""Due retries of the runs this orchestrator owns, in due-time order.

The durable copy of every timer is its run's state (a WAITING step with
``due_at_ms``, in the changelog); this queue is an in-memory index of it,
rebuilt from the run table when a partition is assigned, so a retry that
fell due while no worker ran fires as soon as one takes the partition.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from processors.engine.transition import TimerFired


@dataclass(order=True)
class _Entry:
    due_at_ms: int
    partition: int = field(compare=False)
    timer: TimerFired = field(compare=False)


class TimerQueue:
    """Timers by partition and run; stale heap entries are skipped when popped."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[tuple[int, str], set[TimerFired]] = {}

    def set_run(self, partition: int, run_id: str, timers: list[TimerFired]) -> None:
        """Replace the timers of one run with ``timers`` (empty: it waits for nothing)."""
        key = (partition, run_id)
        old = self._live.get(key, set())
        new = set(timers)
        if new:
            self._live[key] = new
        else:
            self._live.pop(key, None)
        for timer in new - old:
            heapq.heappush(self._heap, _Entry(timer.due_at_ms, partition, timer))

    def drop_partition(self, partition: int) -> None:
        for key in [k for k in self._live if k[0] == partition]:
            del self._live[key]

    def next_due_ms(self) -> int | None:
        self._skip_stale()
        return self._heap[0].due_at_ms if self._heap else None

    def pop_due(self, now_ms: int) -> list[tuple[int, TimerFired]]:
        """Timers due at ``now_ms``, removed, with their partitions, earliest first."""
        due: list[tuple[int, TimerFired]] = []
        while True:
            self._skip_stale()
            if not self._heap or self._heap[0].due_at_ms > now_ms:
                return due
            entry = heapq.heappop(self._heap)
            key = (entry.partition, entry.timer.run_id)
            self._live[key].discard(entry.timer)
            if not self._live[key]:
                del self._live[key]
            due.append((entry.partition, entry.timer))

    def __len__(self) -> int:
        return sum(len(t) for t in self._live.values())

    def _skip_stale(self) -> None:
        while self._heap:
            entry = self._heap[0]
            if entry.timer in self._live.get((entry.partition, entry.timer.run_id), ()):
                return
            heapq.heappop(self._heap)
