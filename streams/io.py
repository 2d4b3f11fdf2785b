"""Reading and writing the engine's topics from outside a worker (CLI, tests, sinks)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from schemas import DecodeError, decode, from_bytes, to_bytes
from schemas.models import FnolReported, JournalEvent
from streams.config import Settings
from streams.kafka import consumer, partition_for, producer, read_to_end, reader, take
from streams.topics import Topics, ensure_topics


class ProduceFailed(RuntimeError):
    """The broker did not acknowledge every record."""


def produce_reports(settings: Settings, topic: str, records: list[tuple[str, FnolReported]]) -> int:
    """Write tokenised reports keyed by run id; returns how many were acknowledged."""
    ensure_topics(settings, [topic])
    p = producer(settings)
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for run_id, record in records:
        while True:
            try:
                p.produce(
                    topic,
                    key=run_id,
                    value=to_bytes(record),
                    partition=partition_for(run_id, settings.partitions),
                    on_delivery=delivered,
                )
                break
            except BufferError:
                p.poll(0.05)
    p.flush(30)
    if failures:
        raise ProduceFailed(f"{len(failures)} of {len(records)} records failed: {failures[0]}")
    return len(records)


@dataclass(frozen=True)
class Received:
    """A decoded record with where it came from."""

    topic: str
    partition: int
    offset: int
    value: dict[str, Any]


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
                yield Received(topic, msg.partition() or 0, msg.offset() or 0, value)
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


def journals(settings: Settings) -> dict[str, list[JournalEvent]]:
    """Every run's journal in this namespace, by run id, in seq order (each event once)."""
    runs: dict[str, dict[int, JournalEvent]] = {}
    for msg in read_all(settings, Topics(settings.namespace).journal):
        try:
            event = from_bytes(msg.value() or b"", JournalEvent)
        except DecodeError:
            continue
        runs.setdefault(event.run_id, {})[event.seq] = event
    return {run_id: [events[s] for s in sorted(events)] for run_id, events in runs.items()}


def run_journal(settings: Settings, run_id: str) -> list[JournalEvent]:
    """Every journal event of one run, in order (read from the run's journal partition)."""
    topics = Topics(settings.namespace)
    out: dict[int, JournalEvent] = {}
    c = reader(settings)
    try:
        p = partition_for(run_id, settings.partitions)
        for msg in read_to_end(c, [TopicPartition(topics.journal, p, 0)]):
            if (msg.key() or b"").decode() != run_id:
                continue
            event = from_bytes(msg.value() or b"", JournalEvent)
            out[event.seq] = event
    finally:
        c.close()
    return [out[s] for s in sorted(out)]


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), default=_default)


def _default(obj: object) -> object:
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(type(obj).__name__)
