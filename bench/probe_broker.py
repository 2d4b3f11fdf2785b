"""Probe the broker's transaction semantics and high watermarks; prints what it sees.

Usage: ``python bench/probe_broker.py`` (embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set). notes/broker-facts.md records the results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams.broker import EmbeddedBroker
from streams.kafka import admin_for
from streams.kafka_config import client_config


def read(bs: str, topic: str, part: int, secs: float = 3.0) -> list[bytes]:
    c = Consumer(
        client_config(bs, **{"group.id": uuid.uuid4().hex, "isolation.level": "read_committed", "log_level": 3})
    )
    c.assign([TopicPartition(topic, part, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got.append(m.value() or b"")
    c.close()
    return got


CRASHING_PRODUCER = """
import sys, time
from confluent_kafka import Producer
from streams.kafka_config import client_config
p = Producer(client_config(sys.argv[1], **{"transactional.id": "t2", "log_level": 3}))
p.init_transactions(10); p.begin_transaction(); p.produce("probe", b"CRASHED", partition=1); p.flush()
print("ready", flush=True); time.sleep(100)
"""


def probe(bs: str) -> None:
    admin = admin_for(bs)
    for f in admin.create_topics([NewTopic("probe", 4, 1)]).values():
        f.result()
    p = Producer(client_config(bs, **{"transactional.id": "t1", "log_level": 3}))
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("probe", b"c1", partition=0)
    p.commit_transaction(10)
    p.begin_transaction()
    p.produce("probe", b"ABORTED", partition=0)
    p.flush()
    p.abort_transaction(10)
    p.begin_transaction()
    p.produce("probe", b"c2", partition=0)
    p.commit_transaction(10)
    print("read_committed after commit c1, abort ABORTED, commit c2:", read(bs, "probe", 0))

    child = subprocess.Popen([sys.executable, "-c", CRASHING_PRODUCER, bs], stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()
    child.kill()
    child.wait()
    print("open transaction of a killed producer, before re-init:", read(bs, "probe", 1))
    p2 = Producer(client_config(bs, **{"transactional.id": "t2", "log_level": 3}))
    p2.init_transactions(30)
    print("after init_transactions with the same id:", read(bs, "probe", 1))

    plain = Producer(client_config(bs, **{"linger.ms": 50, "log_level": 3}))
    for i in range(5):
        plain.produce("probe", f"r{i}".encode(), partition=2)
    plain.flush()
    c = Consumer(client_config(bs, **{"group.id": uuid.uuid4().hex, "log_level": 3}))
    print("5 records in one batch; watermarks:", c.get_watermark_offsets(TopicPartition("probe", 2), timeout=10))
    c.close()


def main() -> None:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        probe(external)
        return
    with EmbeddedBroker() as broker:
        probe(broker.bootstrap_servers)


if __name__ == "__main__":
    main()
