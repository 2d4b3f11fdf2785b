"""The embedded broker's scale wall: read latency against record batches per partition.

Usage: ``python bench/broker_wall.py [--steps 1000,2000,...] [--per-batch 50] [--timeout 20]``
(embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set).

One partition of 200-byte records is filled in two ways side by side: ``single``
(each record its own batch, as a producer flushing every record makes) and
``batched`` (``--per-batch`` records per batch). At each step it prints, for both:

- ``produce``: p50 of one acknowledged single-record produce at that size;
- ``start`` / ``end``: time to read 100 records from offset 0 / from the last 100;
- ``tail``: p50 time from producing one record to a consumer already at the end
  receiving it (what every hop of the engine pays);
- ``fresh``: the same tail latency on a new, empty topic created at that moment
  (does a walled topic slow the others down?);
- ``lookup``: how long the broker takes to serve the partition's last batch to a
  fetch that may wait as long as it likes (a plain Fetch request,
  :meth:`streams.batches.BatchCounter.lookup`). A consumer whose
  ``fetch.wait.max.ms`` is below this gets empty answers: that is the wall.

A read that gets nothing within ``--timeout`` seconds prints ``>T``. The README's
"embedded broker limits" table comes from this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams.batches import BatchCounter
from streams.broker import EmbeddedBroker
from streams.kafka import admin_for
from streams.kafka_config import client_config

VALUE = b"x" * 200


READER: dict[str, int] = {"fetch.wait.max.ms": 2}  # as the engine's low-latency consumers; --fetch-wait


def _consumer(bs: str) -> Consumer:
    return Consumer(
        client_config(
            bs,
            **{
                "group.id": uuid.uuid4().hex,
                "log_level": 3,
                **READER,
                "enable.auto.commit": False,
            },
        )
    )


def read_n(bs: str, topic: str, offset: int, n: int, timeout_s: float) -> float | None:
    """Seconds to read ``n`` records from ``offset``; None if they did not all come within the timeout."""
    c = _consumer(bs)
    c.assign([TopicPartition(topic, 0, offset)])
    got = 0
    start = time.monotonic()
    try:
        while got < n:
            if time.monotonic() - start > timeout_s:
                return None
            for m in c.consume(n - got, 0.05):
                if not m.error():
                    got += 1
        return time.monotonic() - start
    finally:
        c.close()


def tail_latency(bs: str, producer: Producer, topic: str, end: int, timeout_s: float, samples: int = 5) -> float | None:
    """p50 seconds from producing one record to a consumer positioned at ``end`` receiving it."""
    c = _consumer(bs)
    c.assign([TopicPartition(topic, 0, end)])
    took: list[float] = []
    try:
        c.consume(1, 0.2)  # let the consumer connect and reach its position
        for _ in range(samples):
            start = time.monotonic()
            producer.produce(topic, VALUE, partition=0)
            producer.flush()
            got = False
            while not got:
                if time.monotonic() - start > timeout_s:
                    return None
                got = any(not m.error() for m in c.consume(1, 0.05))
            took.append(time.monotonic() - start)
        return statistics.median(took)
    finally:
        c.close()


def fmt(seconds: float | None, timeout_s: float) -> str:
    return f">{timeout_s:.0f}s" if seconds is None else f"{seconds * 1000:.0f}ms"


def run(bs: str, steps: list[int], per_batch: int, timeout_s: float) -> None:
    admin = admin_for(bs)
    tag = uuid.uuid4().hex[:6]
    single, batched = f"wall-single-{tag}", f"wall-batched-{tag}"
    for f in admin.create_topics([NewTopic(single, 1, 1), NewTopic(batched, 1, 1)]).values():
        f.result()
    counter = BatchCounter(bs)
    one = Producer(client_config(bs, **{"linger.ms": 0, "log_level": 3}))
    many = Producer(client_config(bs, **{"linger.ms": 100, "batch.num.messages": per_batch, "log_level": 3}))
    print(
        f"broker {bs}; 200-byte records; batched = {per_batch} records per batch; timeout {timeout_s:.0f}s;"
        f" readers' fetch.wait.max.ms {READER['fetch.wait.max.ms']}"
    )
    print(
        f"{'records':>8} | {'single: batches':>15} {'produce':>8} {'start':>7} {'end':>7} {'tail':>7} {'fresh':>7}"
        f" {'lookup':>7} | {'batched: batches':>16} {'start':>7} {'end':>7} {'tail':>7} {'lookup':>7}"
    )
    records = 0  # in each topic, not counting the tail probes' records
    batched_records = 0
    extra_single = extra_batched = 0
    for target in steps:
        produce_s: list[float] = []
        while records < target:
            start = time.monotonic()
            one.produce(single, VALUE, partition=0)
            one.flush()
            produce_s.append(time.monotonic() - start)
            records += 1
        for i in range(records - batched_records):
            many.produce(batched, VALUE, partition=0)
            if (i + 1) % per_batch == 0:
                many.flush()
        many.flush()
        batched_records = records
        end_single = records + extra_single
        end_batched = records + extra_batched
        s_start = read_n(bs, single, 0, 100, timeout_s)
        s_end = read_n(bs, single, end_single - 100, 100, timeout_s)
        s_tail = tail_latency(bs, one, single, end_single, timeout_s)
        extra_single += 5
        fresh = f"wall-fresh-{tag}-{target}"
        for f in admin.create_topics([NewTopic(fresh, 1, 1)]).values():
            f.result()
        s_fresh = tail_latency(bs, one, fresh, 0, timeout_s)
        b_start = read_n(bs, batched, 0, 100, timeout_s)
        b_end = read_n(bs, batched, end_batched - 100, 100, timeout_s)
        b_tail = tail_latency(bs, one, batched, end_batched, timeout_s)
        extra_batched += 5
        s_lookup = min(counter.lookup(single, 0)[1] for _ in range(3))
        b_lookup = min(counter.lookup(batched, 0)[1] for _ in range(3))
        p50 = statistics.median(produce_s) if produce_s else float("nan")
        print(
            f"{records:>8} | {end_single:>15} {p50 * 1000:>6.1f}ms {fmt(s_start, timeout_s):>7}"
            f" {fmt(s_end, timeout_s):>7} {fmt(s_tail, timeout_s):>7} {fmt(s_fresh, timeout_s):>7}"
            f" {s_lookup * 1000:>5.1f}ms"
            f" | {records // per_batch + extra_batched:>16} {fmt(b_start, timeout_s):>7} {fmt(b_end, timeout_s):>7}"
            f" {fmt(b_tail, timeout_s):>7} {b_lookup * 1000:>5.1f}ms",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="500,1000,2000,3000,4000,5000,6000,8000")
    ap.add_argument("--per-batch", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--fetch-wait", type=int, default=2, help="readers' fetch.wait.max.ms")
    args = ap.parse_args()
    READER["fetch.wait.max.ms"] = args.fetch_wait
    steps = [int(s) for s in args.steps.split(",")]
    with ExitStack() as stack:
        bs = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(EmbeddedBroker()).bootstrap_servers
        run(bs, steps, args.per_batch, args.timeout)


if __name__ == "__main__":
    main()
