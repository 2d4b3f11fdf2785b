"""The run table: run state in RocksDB (``rocksdict``), backed by a changelog topic.

The changelog is the truth; the local RocksDB is a cache of it that also
remembers, per partition, the changelog offset it has applied up to. On
assignment a partition is caught up from that offset (from 0 when the local
files are gone), so deleting a worker's state directory loses nothing.
Local writes happen only after the changelog write is acknowledged: the cache
is never ahead of the log.

A finished run past its retention is replaced by a small marker, and the
marker later by nothing (:mod:`streams.retention`): in the changelog as an
:class:`~schemas.models.ExpiredRun` record, then a tombstone (null value),
under the run's key; restoring applies them the same way, so expired runs stay
expired on a worker rebuilt from the log.

Keys, per partition ``p``: ``r/p/run`` the state; ``w/p/run`` and ``a/p/run``
the waiting and in-flight indexes; ``e/p/<ended ms>/run`` finished runs in the
order they expire, with ``E/p/run`` pointing at that key; ``x/p/run`` an
expired run's marker and ``f/p/<expired ms>/run`` markers in the order they are
forgotten; ``o/p`` the changelog offset applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import TopicPartition
from rocksdict import AccessType, Options, Rdict, WriteBatch

from schemas import DecodeError, from_bytes
from schemas.codec import peek_schema
from schemas.models import ExpiredRun, RunState, RunStatus
from streams.config import Settings
from streams.kafka import read_to_end, reader

log = logging.getLogger(__name__)


def _key(partition: int, run_id: str) -> bytes:
    return f"r/{partition:05d}/{run_id}".encode()


def _waiting_key(partition: int, run_id: str) -> bytes:
    return f"w/{partition:05d}/{run_id}".encode()


def _live_key(partition: int, run_id: str) -> bytes:
    return f"a/{partition:05d}/{run_id}".encode()


def _ended_key(partition: int, ended_ms: int, run_id: str) -> bytes:
    return f"e/{partition:05d}/{ended_ms:013d}/{run_id}".encode()


def _ended_pointer(partition: int, run_id: str) -> bytes:
    return f"E/{partition:05d}/{run_id}".encode()


def _marker_key(partition: int, run_id: str) -> bytes:
    return f"x/{partition:05d}/{run_id}".encode()


def _forget_key(partition: int, expired_ms: int, run_id: str) -> bytes:
    return f"f/{partition:05d}/{expired_ms:013d}/{run_id}".encode()


def _offset_key(partition: int) -> bytes:
    return f"o/{partition:05d}".encode()


_ID_KEY = b"m/changelog-topic-id"


def waits(state: RunState) -> bool:
    """Whether a run has a retry waiting for its due time (indexed for the timers)."""
    return any(s.due_at_ms is not None for s in state.steps)


def is_live(state: RunState) -> bool:
    """Whether a run is still in flight (indexed: what admission counts)."""
    return state.status in (RunStatus.RUNNING, RunStatus.COMPENSATING)


def is_finished(state: RunState) -> bool:
    """Whether a run has ended (indexed by its last change: what retention expires).

    A PAUSED run is neither in flight nor finished: it holds no admission slot (a paused run waits for
    an operator, however long) and never expires.
    """
    return state.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPENSATED)


@dataclass
class Changes:
    """What a checkpoint, or a stretch of the changelog, does to one partition's runs; the last change per run wins."""

    states: dict[str, bytes] = field(default_factory=dict)  # run id -> encoded RunState
    waiting: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    ended: dict[str, int] = field(default_factory=dict)  # finished runs -> their last change (ms)
    markers: dict[str, tuple[ExpiredRun, bytes]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)

    def state(self, state: RunState, value: bytes) -> None:
        """The run's state is now ``state`` (encoded as ``value``)."""
        run_id = state.run_id
        self._clear(run_id)
        self.states[run_id] = value
        if waits(state):
            self.waiting.add(run_id)
        if is_live(state):
            self.live.add(run_id)
        elif is_finished(state):
            self.ended[run_id] = state.updated_at_ms

    def marker(self, marker: ExpiredRun, value: bytes) -> None:
        """The run expired: only ``marker`` (encoded as ``value``) remains of it."""
        self._clear(marker.run_id)
        self.markers[marker.run_id] = (marker, value)

    def forget(self, run_id: str) -> None:
        """Nothing remains of the run (a changelog tombstone)."""
        self._clear(run_id)
        self.forgotten.add(run_id)

    def __len__(self) -> int:
        return len(self.states) + len(self.markers) + len(self.forgotten)

    def _clear(self, run_id: str) -> None:
        self.states.pop(run_id, None)
        self.waiting.discard(run_id)
        self.live.discard(run_id)
        self.ended.pop(run_id, None)
        self.markers.pop(run_id, None)
        self.forgotten.discard(run_id)


class StateDirInUse(RuntimeError):
    """Another worker holds this state directory; give each worker its own ``--name``."""


class RunTable:
    """Run states by (partition, run id), restored from ``changelog_topic``."""

    def __init__(self, path: Path, changelog_topic: str, read_only: bool = False) -> None:
        """Open (or create) the table at ``path``; ``read_only`` opens a worker's table beside it (bench/soak.py)."""
        options = Options(raw_mode=True)
        if not read_only:
            path.mkdir(parents=True, exist_ok=True)
            options.create_if_missing(True)
        access = AccessType.read_only() if read_only else AccessType.read_write()
        try:
            self._db = Rdict(str(path), options=options, access_type=access)
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

    def expired(self, partition: int, run_id: str) -> ExpiredRun | None:
        """The marker of a run that expired (streams.retention), if it did and is not yet forgotten."""
        raw = self._db.get(_marker_key(partition, run_id))
        return None if raw is None else from_bytes(raw, ExpiredRun)

    def apply(self, partition: int, changes: Changes, next_offset: int) -> None:
        """Store ``changes`` and the changelog position they bring us to, atomically.

        Besides the states, the runs waiting for a retry's due time (:func:`waits`), those in flight
        (:func:`is_live`) and the finished ones by their last change are indexed, so :meth:`waiting`,
        :meth:`live` and :meth:`ended_before` find them without reading every run.
        """
        batch = WriteBatch(raw_mode=True)
        for run_id, value in changes.states.items():
            self._drop_marker(batch, partition, run_id)
            self._drop_ended(batch, partition, run_id, keep=changes.ended.get(run_id))
            batch.put(_key(partition, run_id), value)
            if run_id in changes.waiting:
                batch.put(_waiting_key(partition, run_id), b"")
            else:
                batch.delete(_waiting_key(partition, run_id))
            if run_id in changes.live:
                batch.put(_live_key(partition, run_id), b"")
            else:
                batch.delete(_live_key(partition, run_id))
            if (ended := changes.ended.get(run_id)) is not None:
                batch.put(_ended_key(partition, ended, run_id), b"")
                batch.put(_ended_pointer(partition, run_id), str(ended).encode())
        for run_id, (marker, value) in changes.markers.items():
            self._drop_state(batch, partition, run_id)
            self._drop_marker(batch, partition, run_id)
            batch.put(_marker_key(partition, run_id), value)
            batch.put(_forget_key(partition, marker.expired_at_ms, run_id), b"")
        for run_id in changes.forgotten:
            self._drop_state(batch, partition, run_id)
            self._drop_marker(batch, partition, run_id)
        batch.put(_offset_key(partition), str(next_offset).encode())
        self._db.write(batch)

    def _drop_state(self, batch: WriteBatch, partition: int, run_id: str) -> None:
        for key in (_key(partition, run_id), _waiting_key(partition, run_id), _live_key(partition, run_id)):
            batch.delete(key)
        self._drop_ended(batch, partition, run_id, keep=None)

    def _drop_ended(self, batch: WriteBatch, partition: int, run_id: str, keep: int | None) -> None:
        """Remove the run from the finished-runs index, unless it stays there at ``keep``."""
        old = self._db.get(_ended_pointer(partition, run_id))
        if old is None or int(old) == keep:
            return
        batch.delete(_ended_key(partition, int(old), run_id))
        batch.delete(_ended_pointer(partition, run_id))

    def _drop_marker(self, batch: WriteBatch, partition: int, run_id: str) -> None:
        raw = self._db.get(_marker_key(partition, run_id))
        if raw is None:
            return
        batch.delete(_forget_key(partition, from_bytes(raw, ExpiredRun).expired_at_ms, run_id))
        batch.delete(_marker_key(partition, run_id))

    def ended_before(self, partition: int, before_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` finished runs of ``partition`` whose last change is before ``before_ms``, oldest first."""
        return self._timed(f"e/{partition:05d}/", before_ms, limit)

    def expired_before(self, partition: int, before_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` expired runs of ``partition`` that expired before ``before_ms``, oldest first."""
        return self._timed(f"f/{partition:05d}/", before_ms, limit)

    def _timed(self, prefix: str, before_ms: int, limit: int) -> list[str]:
        found: list[str] = []
        for rest in self._scan(prefix.encode()):
            at, _, run_id = rest.partition("/")
            if int(at) >= before_ms or len(found) >= limit:
                break
            found.append(run_id)
        return found

    def _scan(self, prefix: bytes) -> Iterator[str]:
        """The rest of every key that starts with ``prefix``, in key order."""
        for key in self._db.keys(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key[len(prefix) :].decode()

    def counts(self) -> dict[str, int]:
        """How many run states and expired-run markers the table holds (bench/soak.py; reads every key)."""
        states = sum(1 for _ in self._scan(b"r/"))
        markers = sum(1 for _ in self._scan(b"x/"))
        return {"states": states, "markers": markers}

    def waiting(self, partition: int) -> list[RunState]:
        """The runs of ``partition`` that have a retry waiting for its due time."""
        found = []
        for run_id in self._scan(f"w/{partition:05d}/".encode()):
            state = self.get(partition, run_id)
            if state is not None:
                found.append(state)
        return found

    def live(self, partition: int) -> set[str]:
        """The run ids of ``partition`` still in flight."""
        return set(self._scan(f"a/{partition:05d}/".encode()))

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
            pending = {p: Changes() for p in partitions}
            for msg in read_to_end(consumer, starts, timeout_s):
                p = msg.partition() or 0
                position[p] = (msg.offset() or 0) + 1
                key, value = msg.key(), msg.value()
                if key is None:
                    continue
                run_id = key.decode()
                if value is None:
                    pending[p].forget(run_id)  # a tombstone: the run was forgotten (streams.retention)
                else:
                    self._apply_record(pending[p], p, msg.offset() or 0, value)
                applied[p] += 1
                if len(pending[p]) >= 1000:
                    self.apply(p, pending[p], position[p])
                    pending[p] = Changes()
            for p in partitions:
                self.apply(p, pending[p], position[p])
                log.info("restored %s[%d]: %d records, now at %d", self.changelog_topic, p, applied[p], position[p])
            return applied
        finally:
            consumer.close()

    def _apply_record(self, changes: Changes, partition: int, offset: int, value: bytes) -> None:
        try:
            if peek_schema(value).name == ExpiredRun.avro_name:
                changes.marker(from_bytes(value, ExpiredRun), value)
            else:
                changes.state(from_bytes(value, RunState), value)
        except DecodeError as exc:
            # A changelog record we cannot read would be lost state: stop loudly.
            raise RuntimeError(
                f"unreadable changelog record {self.changelog_topic}[{partition}]@{offset}: {exc}"
            ) from exc

    def close(self) -> None:
        self._db.close()


__all__ = ["Changes", "RunTable", "StateDirInUse"]
