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
import time
from pathlib import Path

from confluent_kafka import TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from schemas import DecodeError, from_bytes
from schemas.models import RunState
from streams.config import Settings
from streams.kafka import reader

log = logging.getLogger(__name__)


def _key(partition: int, run_id: str) -> bytes:
    return f"r/{partition:05d}/{run_id}".encode()


def _offset_key(partition: int) -> bytes:
    return f"o/{partition:05d}".encode()


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

    def get(self, partition: int, run_id: str) -> RunState | None:
        raw = self._db.get(_key(partition, run_id))
        return None if raw is None else from_bytes(raw, RunState)

    def applied_offset(self, partition: int) -> int:
        """The next changelog offset this cache has not applied."""
        raw = self._db.get(_offset_key(partition))
        return int(raw) if raw is not None else 0

    def write(self, partition: int, states: dict[str, bytes], next_offset: int) -> None:
        """Store encoded states and the changelog position they bring us to, atomically."""
        batch = WriteBatch(raw_mode=True)
        for run_id, value in states.items():
            batch.put(_key(partition, run_id), value)
        batch.put(_offset_key(partition), str(next_offset).encode())
        self._db.write(batch)

    def restore(self, settings: Settings, partition: int, timeout_s: float = 120.0) -> int:
        """Apply the changelog from our applied offset to its end; returns records applied."""
        start = self.applied_offset(partition)
        consumer = reader(settings)
        try:
            tp = TopicPartition(self.changelog_topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if start < low:
                start = low
            if start >= high:
                return 0
            consumer.assign([TopicPartition(self.changelog_topic, partition, start)])
            applied = 0
            deadline = time.monotonic() + timeout_s
            position = start
            while position < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"restore of {self.changelog_topic}[{partition}] stuck at {position}/{high}"
                    )
                batch: dict[str, bytes] = {}
                for msg in consumer.consume(1000, 0.5):
                    if msg.error():
                        continue
                    position = msg.offset() + 1
                    key = msg.key()
                    value = msg.value()
                    if key is None or value is None:
                        continue
                    try:
                        from_bytes(value, RunState)
                    except DecodeError as exc:
                        # A changelog record we cannot read would be lost state: stop loudly.
                        raise RuntimeError(
                            f"unreadable changelog record {self.changelog_topic}[{partition}]@{msg.offset()}: {exc}"
                        ) from exc
                    batch[key.decode()] = value
                    applied += 1
                if batch or position > start:
                    self.write(partition, batch, position)
            log.info("restored %s[%d]: %d records up to %d", self.changelog_topic, partition, applied, high)
            return applied
        finally:
            consumer.close()

    def close(self) -> None:
        self._db.close()


__all__ = ["RunTable", "StateDirInUse"]
