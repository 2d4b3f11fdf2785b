"""A deploy mid-stream: N FNOL claims, a new workflow version deployed halfway, no run lost or failed by it.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/deploy.py [--claims 200 --rate 20] [--no-deploy]``.

A `durable worker` runs FNOL (its declared version). Claims are produced at
R claims/s; halfway, the deploy: a worker loading FNOL and ``FNOL_NEXT`` (the
next version: one retry policy changed) starts, and the first worker is
SIGKILLed, so the switch is also a crash. Afterwards, from the run changelog
and the decisions topic: runs per version and status, decisions written
twice, runs with no decision.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer

from bench.common import claims, start_worker, stop_worker
from processors.engine import RetryPolicy
from processors.fnol import FNOL
from schemas import encode
from streams import runlist
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import partition_for
from streams.kafka_config import client_config
from streams.reading import header, read_all
from streams.topics import Topics, ensure_topics

# The next version: the same steps, one retry policy changed (what a deploy of a tuned policy looks like).
FNOL_NEXT = dataclasses.replace(
    FNOL,
    version=f"{FNOL.version}-next",
    steps=tuple(
        dataclasses.replace(s, retry=RetryPolicy(max_attempts=s.retry.max_attempts + 1)) if i == 0 else s
        for i, s in enumerate(FNOL.steps)
    ),
)


def run(bootstrap: str, n: int, rate: float, deploy: bool = True) -> None:
    ns = f"deploybench{uuid.uuid4().hex[:6]}"
    state = tempfile.TemporaryDirectory(prefix="durable-bench-")
    settings = Settings(bootstrap_servers=bootstrap, namespace=ns, state_dir=Path(state.name), worker_name="bench")
    topics = Topics(ns)
    ensure_topics(settings, [topics.name("fnol.reported"), topics.name("decisions")])
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DURABLE_NAMESPACE": ns, "DURABLE_STATE_DIR": state.name}

    def worker(name: str, *specs: str) -> subprocess.Popen[bytes]:
        return start_worker(env, name, *[a for spec in specs for a in ("--workflow", spec)])

    old = worker("old", "processors.fnol:FNOL")
    new: subprocess.Popen[bytes] | None = None
    prod = Producer(client_config(bootstrap, **{"linger.ms": 1, "log_level": 3}))
    batch = claims(n, f"D{ns}")
    run_ids = {g.run_id for g in batch}
    t0 = time.perf_counter()
    deployed_at = 0.0
    try:
        for i, g in enumerate(batch):
            while time.perf_counter() < t0 + i / rate:
                time.sleep(0.001)  # pacing the producer, not synchronisation
            if deploy and i == n // 2:
                new = worker("new", "processors.fnol:FNOL", "bench.deploy:FNOL_NEXT")
                old.send_signal(signal.SIGKILL)
                old.wait(10)
                deployed_at = time.perf_counter() - t0
            prod.produce(
                topics.name("fnol.reported"),
                key=g.run_id,
                value=encode(FNOL.input_schema, g.record),
                partition=partition_for(g.run_id, settings.partitions),
            )
            prod.poll(0)
        prod.flush()
        deadline = time.monotonic() + 300
        decided: set[str] = set()
        while time.monotonic() < deadline and not run_ids <= decided:
            time.sleep(1.0)  # polling the decisions topic, bounded by the deadline
            decided = {r.run_id for r in runlist.latest_states(settings) if r.status != "RUNNING"}
        elapsed = time.perf_counter() - t0
        decisions = [m for m in read_all(settings, topics.name("decisions")) if (m.key() or b"").decode() in run_ids]
        ids = Counter(header(m, "id") for m in decisions)
        states = [r for r in runlist.latest_states(settings) if r.run_id in run_ids]
        what = (
            f"deploy (start new worker with 2 versions, SIGKILL old) at {deployed_at:.1f}s" if deploy else "no deploy"
        )
        print(f"{n} claims at {rate:g}/s; {what}")
        print(f"all settled after {elapsed:.1f}s")
        for (wf, version, status), count in sorted(runlist.counts(states).items()):
            print(f"  {wf} {version:28} {status:12} {count}")
        print(f"runs with a decision: {len({(m.key() or b'').decode() for m in decisions})} of {n}")
        print(f"decisions written twice: {sum(1 for c in ids.values() if c > 1)}")
        print(f"runs blocked: {sum(1 for r in states if r.blocked)}")
    finally:
        for p in (old, new):
            stop_worker(p)
        state.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--no-deploy", action="store_true", help="the baseline: the same claims, no deploy")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        run(bootstrap, args.claims, args.rate, not args.no_deploy)
        return
    with EmbeddedBroker() as broker:
        run(broker.bootstrap_servers, args.claims, args.rate, not args.no_deploy)


if __name__ == "__main__":
    main()
