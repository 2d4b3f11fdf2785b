"""Reading the engine's topics from outside a worker (CLI, tests, the demo): whole topics, or following them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, TopicPartition

from schemas import DecodeError, decode
from streams.config import Settings
from streams.kafka import consumer, partition_for, read_to_end, reader, take
from streams.topics import ensure_topics


@dataclass(frozen=True)
class Received:
    """A decoded record with where it came from."""

    topic: str
    partition: int
    offset: int
    value: dict[str, Any]
    key: str | None = None
    output_id: str | None = None  # the ``id`` header the orchestrator puts on what it writes


def follow(
    settings: Settings,
    topic: str,
    *,
    group: str | None,
    from_beginning: bool,
    idle_timeout_s: float | None,
    follow_forever: bool,
) -> Iterator[Received]:
    """Yield decoded records of ``topic``.

    Without ``follow_forever``, stops once the partitions' ends (as of the
    start) are reached; ``idle_timeout_s`` stops after that long without a
    new record. With a ``group``, offsets are committed as records are yielded.
    """
    ensure_topics(settings, [topic])
    c = (
        consumer(settings, group, **{"auto.offset.reset": "earliest" if from_beginning else "latest"})
        if group
        else reader(settings, **{"auto.offset.reset": "earliest" if from_beginning else "latest"})
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(meta.partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        if group:
            c.subscribe([topic])
        else:
            start = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
            c.assign([TopicPartition(topic, p, start) for p in partitions])
        positions = dict.fromkeys(partitions, -1)
        last_new = time.monotonic()
        while True:
            msgs = take(c, 500, 0.2)
            for msg in msgs:
                if msg.error():
                    continue
                positions[msg.partition() or 0] = (msg.offset() or 0) + 1
                last_new = time.monotonic()
                try:
                    _, value = decode(msg.value() or b"")
                except DecodeError as exc:
                    value = {"undecodable": str(exc)}
                key = msg.key()
                yield Received(
                    topic,
                    msg.partition() or 0,
                    msg.offset() or 0,
                    value,
                    key.decode(errors="replace") if key is not None else None,
                    header(msg, "id"),
                )
                if group:
                    c.commit(message=msg, asynchronous=True)
            if idle_timeout_s is not None and time.monotonic() - last_new >= idle_timeout_s:
                return
            if not follow_forever and idle_timeout_s is None:
                caught_up = all(
                    positions[p] >= ends[p] or (positions[p] == -1 and _at_end(c, topic, p, ends[p]))
                    for p in partitions
                )
                if caught_up and not msgs:
                    return
    finally:
        c.close()


def _at_end(c: Any, topic: str, p: int, end: int) -> bool:
    if end == 0:
        return True
    pos: int = c.position([TopicPartition(topic, p)])[0].offset
    return pos >= end


def read_all(settings: Settings, topic: str) -> list[Message]:
    """Every record now in ``topic``, all partitions from their start to their ends."""
    ensure_topics(settings, [topic])
    c = reader(settings)
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return list(read_to_end(c, [TopicPartition(topic, p, 0) for p in sorted(meta.partitions)]))
    finally:
        c.close()


def keyed(settings: Settings, topic: str, keys: set[str]) -> list[Message]:
    """Every record of ``topic`` whose key is one of ``keys``, in partition order.

    Reads only the partitions those keys live on (run-keyed topics are partitioned by ``partition_for``);
    nothing when the topic does not exist (all topics are listed: naming one would create it).
    """
    partitions = sorted({partition_for(k, settings.partitions) for k in keys})
    if not partitions:
        return []
    c = reader(settings)
    try:
        if c.list_topics(timeout=10).topics.get(topic) is None:
            return []
        return [
            msg
            for msg in read_to_end(c, [TopicPartition(topic, p, 0) for p in partitions])
            if (msg.key() or b"").decode(errors="replace") in keys
        ]
    finally:
        c.close()


def header(msg: Message, name: str) -> str | None:
    """A record header's value as text (None when absent)."""
    for pair in msg.headers() or []:
        key, value = pair[0], pair[1]
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def dumps(value: dict[str, Any]) -> str:
    """One record as one compact JSON line (bytes as hex)."""
    return json.dumps(value, separators=(",", ":"), default=_default)


def _default(obj: object) -> object:
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(type(obj).__name__)
