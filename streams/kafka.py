"""The Kafka client factories (producer, consumer, reader, admin) and the key -> partition function every writer shares.

Every client gets its security settings from :mod:`streams.kafka_config`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import wall
from streams.config import Settings
from streams.kafka_config import client_config

# Tansu answers an empty fetch only when this wait is over (notes/broker-facts.md).
FETCH_WAIT_MS = 10  # readers without a group
# Group consumers with Settings.low_latency. Shorter is faster per hop and dearer when idle: Tansu holds each empty
# fetch for the whole wait, so an idle consumer fetches 1000/wait times a second (README "Benchmarks").
LOW_LATENCY_FETCH_WAIT_MS = int(os.environ.get("DURABLE_FETCH_WAIT_MS", "2"))
DEFAULT_FETCH_WAIT_MS = 500  # librdkafka's own default, which the other group consumers keep
LOW_LATENCY_SLICE_S = 0.002


def take(c: Consumer, max_records: int, timeout_s: float, slice_s: float | None = None) -> list[Message]:
    """Up to ``max_records`` records within ``timeout_s``.

    librdkafka's ``consume(n, timeout)`` waits for all ``n`` records or the
    whole timeout, so under light load the timeout lands on every hop. With
    ``slice_s`` (Settings.low_latency) it returns as soon as one record is
    there: a poll for the first, then whatever else is already fetched. (It
    once asked in ``slice_s`` slices, which spun: a third of a low-latency
    orchestrator's samples were in those calls, and each slice added up to its
    length to a hop.)
    """
    if slice_s is None:
        msgs: list[Message] = c.consume(max_records, timeout_s)
        return msgs
    first = c.poll(timeout_s)
    if first is None:
        return []
    return [first, *c.consume(max_records - 1, 0)] if max_records > 1 else [first]


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java client's default partitioner (murmur2, positive), so any producer agrees."""
    length = len(key)
    seed = 0x9747B28C
    m = 0x5BD1E995
    h = (seed ^ length) & 0xFFFFFFFF
    i = 0
    while length - i >= 4:
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= key[i + 2] << 16
    if rest >= 2:
        h ^= key[i + 1] << 8
    if rest >= 1:
        h ^= key[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def partition_for(key: str, partitions: int) -> int:
    return murmur2_partition(key.encode(), partitions)


def producer(settings: Settings, **extra: Any) -> Producer:
    """An idempotent producer: broker-side dedupe of its own retries, order kept per partition."""
    return Producer(
        client_config(
            settings.bootstrap_servers,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "partitioner": "murmur2_random",
                "log_level": 3,
                **extra,
            },
        )
    )


def consumer(settings: Settings, group: str, reads: Collection[str] | None = None, **extra: Any) -> Consumer:
    """A group consumer that commits only what the caller tells it to.

    The session and heartbeat settings join a new group in about half the
    session timeout on the embedded broker and keep members stable under load
    (see notes/broker-facts.md). ``range`` assignment gives partition ``p`` of
    every co-partitioned topic to the same member. ``reads`` names the topics it
    will read: on the embedded broker their size sets its fetch wait (:mod:`streams.wall`).
    """
    return Consumer(
        client_config(
            settings.bootstrap_servers,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": settings.heartbeat_interval_ms,
                "max.poll.interval.ms": 300_000,
                "partition.assignment.strategy": "range",
                "log_level": 3,
                **({"fetch.wait.max.ms": _low_latency_wait(settings, reads)} if settings.low_latency else {}),
                **extra,
            },
        )
    )


def _low_latency_wait(settings: Settings, reads: Collection[str] | None) -> int:
    return wall.fetch_wait_ms(settings, LOW_LATENCY_FETCH_WAIT_MS, reads)


def reader(settings: Settings, **extra: Any) -> Consumer:
    """A consumer with no group membership, for scans by explicit assignment."""
    return Consumer(
        client_config(
            settings.bootstrap_servers,
            **{
                "group.id": f"{settings.namespace}.reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": wall.fetch_wait_ms(settings, FETCH_WAIT_MS),
                "log_level": 3,
                **extra,
            },
        )
    )


def admin_for(bootstrap: str, **extra: Any) -> AdminClient:
    """An AdminClient for a broker address (with the security settings, like every client)."""
    return AdminClient(client_config(bootstrap, **{"log_level": 3, **extra}))


def admin(settings: Settings, **extra: Any) -> AdminClient:
    """The AdminClient of ``settings``' broker: topics, groups, offsets."""
    return admin_for(settings.bootstrap_servers, **extra)


class ReadIncomplete(RuntimeError):
    """A partition could not be read to its end in time."""


def read_to_end(
    c: Consumer, starts: list[TopicPartition], timeout_s: float = 60.0, idle_polls: int = 2
) -> Iterator[Message]:
    """Yield every record from ``starts`` (explicit offsets) to the current end of each partition.

    The embedded broker under-reports high watermarks (notes/broker-facts.md),
    so the end is where we are past the reported high watermark and fetches
    come back empty ``idle_polls`` times in a row.
    """
    if not starts:
        return
    highs = {
        (tp.topic, tp.partition): c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
        for tp in starts
    }
    pos = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in starts}
    c.assign(starts)
    deadline = time.monotonic() + timeout_s
    empty = 0
    while True:
        if time.monotonic() > deadline:
            raise ReadIncomplete(f"read of {sorted(pos)} stopped at {pos}, high watermarks {highs}")
        msgs = take(c, 1000, 0.05)
        got = False
        for msg in msgs:
            if msg.error():
                continue
            got = True
            pos[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
            yield msg
        empty = 0 if got else empty + 1
        if empty >= idle_polls and all(pos[k] >= highs[k] for k in pos):
            return
