"""Forget delivered entries of the delivery table a retention period after their delivery.

Without this the table (RocksDB and its changelog) keeps an entry per decision
forever. A delivered entry is needed while its decision may be read again from
the sink's uncommitted tail after a crash (seconds to minutes), so that it is
skipped rather than re-sent; after that the decision is read again only if an
operator resets the sink's offsets, and re-sending it then (with the same
idempotency key) is what they asked for. Pending and dead entries are never
forgotten: they hold what a retry or a redrive needs.

Faust writes a table change to the partition of the stream event being
processed, so a partition's entries are deleted while one of its events is:
the index of delivered entries is per partition, kept in memory, filled as
deliveries complete and, the first time a partition is seen (after a restart
or a rebalance), from a scan of the table.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any

from connectors.sinks.webhook.delivery import DELIVERED

__all__ = ["Pruning"]


class Pruning:
    """The per-partition index of delivered entries, oldest first, and the deletion of expired ones."""

    def __init__(self, table: MutableMapping[str, Any], retention_s: float, every_s: float = 1.0) -> None:
        self.table = table
        self.retention_ms = int(retention_s * 1000)
        self.every_s = every_s
        self._index: dict[int, deque[tuple[int, str]]] = {}
        self._last: dict[int, float] = {}

    def delivered(self, partition: int, key: str, done_ms: int) -> None:
        """Note a delivery that just completed (a partition not indexed yet finds it when it is scanned)."""
        if partition in self._index:
            self._index[partition].append((done_ms, key))

    def forget(self, partitions: set[int]) -> None:
        """Drop the index of partitions this worker no longer holds (another may change their entries)."""
        for partition in partitions:
            self._index.pop(partition, None)
            self._last.pop(partition, None)

    def prune(self, partition: int, now_ms: int | None = None) -> int:
        """Delete ``partition``'s entries delivered more than the retention ago; call while handling its event.

        At most once every ``every_s`` per partition. Returns how many were deleted.
        """
        now = time.monotonic()
        if now - self._last.get(partition, float("-inf")) < self.every_s:
            return 0
        self._last[partition] = now
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        queue = self._partition(partition, now_ms)
        cutoff = now_ms - self.retention_ms
        deleted = 0
        while queue and queue[0][0] <= cutoff:
            done_ms, key = queue.popleft()
            raw = self.table.get(key)
            # Only the delivery the index saw: a redelivered or redriven entry since is another one.
            if isinstance(raw, dict) and raw.get("status") == DELIVERED and _done_ms(raw, done_ms) == done_ms:
                del self.table[key]
                deleted += 1
        return deleted

    def _partition(self, partition: int, now_ms: int) -> deque[tuple[int, str]]:
        if partition not in self._index:
            found = []
            for key, raw in self.table.items():
                if not isinstance(raw, dict) or raw.get("status") != DELIVERED:
                    continue
                source = raw.get("source")
                if source and int(source[1]) == partition:
                    # Entries written before deliveries were timed count from now: one retention from the upgrade.
                    found.append((_done_ms(raw, now_ms), key))
            self._index[partition] = deque(sorted(found))
        return self._index[partition]


def _done_ms(raw: dict[str, Any], otherwise: int) -> int:
    return int(raw.get("done_ms") or otherwise)
