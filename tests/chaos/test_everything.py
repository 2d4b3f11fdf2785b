"""Everything at once: two FNOL workers, claims streaming in, and every fault we know, one after another.

Between waves of claims: SIGKILL a worker (its state directory wiped every other time)
and start it again; stop the broker past the workers' session timeout (an outage: the
embedded broker keeps its log only in memory, so an outage is the restart it survives;
tests/integration/test_broker_loss.py shows what a restart that loses the log does);
SIGSTOP a worker until the other has taken its partitions over, then wake it (a zombie).
At the end every claim is decided exactly once, counted on the raw decisions topic, no
journal event or step command is written twice, and no topic holds a byte of the
claimants' personal data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import TopicPartition

from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import admin, read_to_end, reader
from streams.topics import Topics
from tests.conftest import WorkerProcesses, read_topic, wait_for
from tests.helpers import SAMPLES, assert_exactly_once, decisions, produce, sample_claims

WAVES = 8
PER_WAVE = 10


def _decided(settings: Settings) -> set[str]:
    return {d["run_id"] for d in decisions(settings)}


def _personal_data() -> set[bytes]:
    """The raw personal values of the sample claims (what must never reach a topic)."""
    out: set[bytes] = set()
    for line in SAMPLES.read_text().splitlines():
        data = json.loads(line)
        values = [*(data.get("claimant") or {}).values(), (data.get("vehicle") or {}).get("plate")]
        out |= {v.encode() for v in values if isinstance(v, str) and v}
    return out


def _raw_records(settings: Settings) -> dict[str, list[bytes]]:
    """Every key, value and header of every topic of the namespace, as written."""
    client = admin(settings)
    topics = {
        name: sorted(meta.partitions)
        for name, meta in client.list_topics(timeout=10).topics.items()
        if name.startswith(f"{settings.namespace}.")
    }
    out: dict[str, list[bytes]] = {}
    scan = reader(settings)
    try:
        for topic, partitions in topics.items():
            chunks: list[bytes] = []
            for msg in read_to_end(scan, [TopicPartition(topic, p, 0) for p in partitions]):
                chunks += [msg.key() or b"", msg.value() or b""]
                chunks += [v if isinstance(v, bytes) else str(v).encode() for _, v in msg.headers() or []]
            out[topic] = chunks
    finally:
        scan.close()
    return out


def test_kills_wiped_state_an_outage_and_a_zombie_lose_and_double_nothing_and_leak_no_personal_data(
    own_broker: list[EmbeddedBroker], on_own_broker: tuple[Settings, WorkerProcesses]
) -> None:
    settings, workers = on_own_broker
    claims = sample_claims(WAVES * PER_WAVE, prefix="EV")
    run_ids = {c.run_id for c in claims}
    # Model calls at half their simulated latency (about 1 s a run): each wave is still in flight when it is struck.
    env = {"DURABLE_MODEL_SPEED": "2"}
    procs = {name: workers.start(name, env=env) for name in ("a", "b")}
    wait_for(lambda: all("assigned" in workers.log(n) for n in procs), 60, "both workers to own partitions")
    kills = 0

    def kill(name: str) -> None:
        nonlocal kills
        procs[name].send_signal(signal.SIGKILL)
        procs[name].wait(10)
        if kills % 2:
            shutil.rmtree(Path(settings.state_dir) / settings.namespace / name, ignore_errors=True)
        kills += 1
        procs[name] = workers.start(name, env=env)

    def outage() -> None:
        pid = own_broker[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(8)  # the outage itself, not a synchronisation: longer than the 6 s session timeout
        finally:
            os.kill(pid, signal.SIGCONT)

    def zombie() -> None:
        taken = workers.log("b").count("assigned")
        procs["a"].send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: workers.log("b").count("assigned") > taken, 60, "b to take a's partitions over")
        finally:
            procs["a"].send_signal(signal.SIGCONT)

    faults: list[Callable[[], None]] = [
        lambda: kill("a"),
        lambda: kill("b"),  # state wiped
        outage,
        lambda: kill("a"),
        zombie,
        lambda: kill("b"),  # state wiped
        lambda: kill("a"),
        lambda: None,
    ]
    for wave, fault in enumerate(faults):
        before = len(_decided(settings))
        produce(settings, claims[wave * PER_WAVE : (wave + 1) * PER_WAVE])
        # Strike while the wave is in flight: once it has begun to be decided.
        wait_for(lambda b=before: len(_decided(settings)) > b, 120, f"wave {wave} to start being decided")  # type: ignore[misc]
        fault()

    wait_for(lambda: _decided(settings) >= run_ids, 240, "every claim to be decided")
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        assert proc.wait(30) == 0, workers.log(name)[-3000:]

    assert_exactly_once(settings, run_ids)
    assert not [r for r, n in Counter(d["run_id"] for d in decisions(settings)).items() if n > 1]
    commands = read_topic(settings, Topics(settings.namespace).commands)
    twice = [i for i, n in Counter(c["_id"] for c in commands).items() if n > 1]
    assert not twice, f"step commands written twice: {twice[:5]}"

    personal = _personal_data()
    leaks = {
        topic: sorted(v.decode() for v in personal if any(v in chunk for chunk in chunks))
        for topic, chunks in _raw_records(settings).items()
    }
    assert not {t: v for t, v in leaks.items() if v}, f"personal data on topics: {leaks}"
    logs = "".join(workers.log(n) for n in procs)
    assert not [v for v in personal if v.decode() in logs], "personal data in worker logs"
