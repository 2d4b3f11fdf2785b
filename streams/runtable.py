"""The run table: run state in RocksDB (``rocksdict``), backed by a changelog topic.

The changelog is the truth; the local RocksDB is a cache of it that also
remembers, per partition, the changelog offset it has applied up to. On
assignment a partition is caught up from that offset (from 0 when the local
files are gone), so deleting a worker's state directory loses nothing.
Local writes happen only after the changelog write is acknowledged: the cache
is never ahead of the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

from confluent_kafka import TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from schemas import DecodeError, from_bytes
from schemas.models import RunState, RunStatus
from streams.config import Settings
from streams.kafka import read_to_end, reader

log = logging.getLogger(__name__)


def _key(partition: int, run_id: str) -> bytes:
    return f"r/{partition:05d}/{run_id}".encode()


def _waiting_key(partition: int, run_id: str) -> bytes:
    return f"w/{partition:05d}/{run_id}".encode()


def _live_key(partition: int, run_id: str) -> bytes:
    return f"a/{partition:05d}/{run_id}".encode()


def _offset_key(partition: int) -> bytes:
    return f"o/{partition:05d}".encode()


_ID_KEY = b"m/changelog-topic-id"


def waits(state: RunState) -> bool:
    """Whether a run has a retry waiting for its due time (indexed for the timers)."""
    return any(s.due_at_ms is not None for s in state.steps)


def is_live(state: RunState) -> bool:
    """Whether a run is still in flight (indexed: what admission counts)."""
    return state.status in (RunStatus.RUNNING, RunStatus.COMPENSATING)


class StateDirInUse(RuntimeError):
    """Another worker holds this state directory; give each worker its own ``--name``."""


class RunTable:
    """Run states by (partition, run id), restored from ``changelog_topic``."""

    def __init__(self, path: Path, changelog_topic: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            self._db = Rdict(str(path), options=options)
        except Exception as exc:
            if "lock" in str(exc).lower():
                raise StateDirInUse(f"state directory {path} is locked by another worker") from exc
            raise
        self.path = path
        self.changelog_topic = changelog_topic

    def bind(self, changelog_id: str) -> bool:
        """Tie the cache to one incarnation of the changelog topic.

        A cache built from another incarnation (the topic or the in-memory
        broker was re-created) would hold runs the log does not: it is
        emptied. Returns True when it was.
        """
        stored = self._db.get(_ID_KEY)
        if stored is not None and stored.decode() == changelog_id:
            return False
        batch = WriteBatch(raw_mode=True)
        for key in self._db.keys():  # noqa: SIM118 - Rdict iterates items, not keys
            batch.delete(key)
        batch.put(_ID_KEY, changelog_id.encode())
        self._db.write(batch)
        return stored is not None

    def get(self, partition: int, run_id: str) -> RunState | None:
        raw = self._db.get(_key(partition, run_id))
        return None if raw is None else from_bytes(raw, RunState)

    def applied_offset(self, partition: int) -> int:
        """The next changelog offset this cache has not applied."""
        raw = self._db.get(_offset_key(partition))
        return int(raw) if raw is not None else 0

    def write(
        self, partition: int, states: dict[str, bytes], waiting: set[str], next_offset: int, live: set[str] | None = None
    ) -> None:
        """Store encoded states and the changelog position they bring us to, atomically.

        The runs in ``waiting`` (a retry waits for its due time: :func:`waits`)
        and in ``live`` (still in flight: :func:`is_live`) are also indexed, so
        :meth:`waiting` and :meth:`live` find them without reading every run.
        """
        batch = WriteBatch(raw_mode=True)
        for run_id, value in states.items():
            batch.put(_key(partition, run_id), value)
            if run_id in waiting:
                batch.put(_waiting_key(partition, run_id), b"")
            else:
                batch.delete(_waiting_key(partition, run_id))
            if live is not None and run_id in live:
                batch.put(_live_key(partition, run_id), b"")
            else:
                batch.delete(_live_key(partition, run_id))
        batch.put(_offset_key(partition), str(next_offset).encode())
        self._db.write(batch)

    def waiting(self, partition: int) -> list[RunState]:
        """The runs of ``partition`` that have a retry waiting for its due time."""
        prefix = f"w/{partition:05d}/".encode()
        found = []
        for key in self._db.keys(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                break
            state = self.get(partition, key[len(prefix) :].decode())
            if state is not None:
                found.append(state)
        return found

    def live(self, partition: int) -> set[str]:
        """The run ids of ``partition`` still in flight."""
        prefix = f"a/{partition:05d}/".encode()
        found = set()
        for key in self._db.keys(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                break
            found.add(key[len(prefix) :].decode())
        return found

    def restore(self, settings: Settings, partitions: list[int], timeout_s: float = 120.0) -> dict[int, int]:
        """Apply the changelog of ``partitions`` from our applied offsets to their ends.

        Returns the number of records applied per partition. All partitions
        are read in one pass, so taking over many costs about as much as one.
        """
        consumer = reader(settings)
        applied = dict.fromkeys(partitions, 0)
        try:
            starts: list[TopicPartition] = []
            position: dict[int, int] = {}
            for p in partitions:
                low, _ = consumer.get_watermark_offsets(TopicPartition(self.changelog_topic, p), timeout=10)
                position[p] = max(self.applied_offset(p), low)
                starts.append(TopicPartition(self.changelog_topic, p, position[p]))
            pending: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
            pending_waiting: dict[int, set[str]] = {p: set() for p in partitions}
            pending_live: dict[int, set[str]] = {p: set() for p in partitions}
            for msg in read_to_end(consumer, starts, timeout_s):
                p = msg.partition() or 0
                position[p] = (msg.offset() or 0) + 1
                key, value = msg.key(), msg.value()
                if key is None or value is None:
                    continue
                try:
                    state = from_bytes(value, RunState)
                except DecodeError as exc:
                    # A changelog record we cannot read would be lost state: stop loudly.
                    raise RuntimeError(
                        f"unreadable changelog record {self.changelog_topic}[{p}]@{msg.offset()}: {exc}"
                    ) from exc
                run_id = key.decode()
                pending[p][run_id] = value
                if waits(state):
                    pending_waiting[p].add(run_id)
                if is_live(state):
                    pending_live[p].add(run_id)
                applied[p] += 1
                if len(pending[p]) >= 1000:
                    self.write(p, pending[p], pending_waiting[p], position[p], pending_live[p])
                    pending[p], pending_waiting[p], pending_live[p] = {}, set(), set()
            for p in partitions:
                self.write(p, pending[p], pending_waiting[p], position[p], pending_live[p])
                log.info("restored %s[%d]: %d records, now at %d", self.changelog_topic, p, applied[p], position[p])
            return applied
        finally:
            consumer.close()

    def close(self) -> None:
        self._db.close()


__all__ = ["RunTable", "StateDirInUse"]
