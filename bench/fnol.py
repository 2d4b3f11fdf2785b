"""Benchmark: the FNOL triage agent end to end, and the engine's share of its latency.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/fnol.py [--claims N --rate R | --burst]``.

N claims (from the samples, with fresh claim ids) are produced at R claims/s
to a worker (a `durable worker` process, as in production) running the FNOL
workflow with the local simulated model at its real latency profile
(DURABLE_MODEL_SPEED=1). For each claim:

- **end to end**: from just before it was produced to when its decision was
  read from the decisions topic;
- **work on the critical path**: the longest path through the workflow's DAG
  of the step spans' durations (what the tools and the simulated model took);
- **engine share**: (end to end - work) / end to end: Kafka hops, queueing,
  orchestration and intake, i.e. what the engine adds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer

from bench.common import batch_table, claims, decisions_reader, pct, start_worker, stop_worker
from processors.engine import Workflow
from processors.engine.inputs import Accepted
from processors.fnol import FNOL
from schemas import decode, encode, from_bytes
from schemas.models import TraceSpan
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import LOW_LATENCY_SLICE_S, partition_for, take
from streams.kafka_config import client_config
from streams.reading import read_all
from streams.topics import Topics, ensure_topics


def critical_path_ms(wf: Workflow, durations: dict[str, float]) -> float:
    """Longest path through the DAG, each step weighted by its (last) span's duration."""
    finish: dict[str, float] = {}
    for step in wf.steps:  # declared in dependency order
        finish[step.name] = max((finish[d] for d in step.after), default=0.0) + durations.get(step.name, 0.0)
    return max(finish.values(), default=0.0)


def run(
    bootstrap: str, n: int, rate: float, low_latency: bool, burst: bool = False, batches: bool = False
) -> dict[str, float]:
    ns = f"fnolbench{uuid.uuid4().hex[:6]}"
    state = tempfile.TemporaryDirectory(prefix="durable-bench-")
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=ns,
        state_dir=Path(state.name),
        worker_name="bench",
        low_latency=low_latency,
    )
    topics = Topics(ns)
    ensure_topics(settings, [topics.name("fnol.reported"), topics.name("decisions")])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DURABLE_NAMESPACE": ns,
        "DURABLE_STATE_DIR": state.name,
        "DURABLE_LOW_LATENCY": "1" if low_latency else "0",
    }
    worker = start_worker(env)
    prod = Producer(client_config(bootstrap, **{"linger.ms": 1, "log_level": 3}))
    cons = decisions_reader(settings, topics.name("decisions"))
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    statuses: dict[str, str] = {}
    over_budget: set[str] = set()

    def send(batch: list[Accepted], tag: str) -> None:
        for g in batch:
            sent[g.run_id] = time.perf_counter()
            prod.produce(
                topics.name("fnol.reported"),
                key=g.run_id,
                value=encode(FNOL.input_schema, g.record),
                partition=partition_for(g.run_id, settings.partitions),
            )
            prod.poll(0)
        prod.flush()

    def drain() -> None:
        for m in take(cons, 1000, 0.005, LOW_LATENCY_SLICE_S):
            if m.error():
                continue
            _, d = decode(m.value() or b"")
            if d["run_id"] in sent and d["run_id"] not in done:
                done[d["run_id"]] = time.perf_counter()
                statuses[d["run_id"]] = str(d["status"])
                if any("latency_within_budget failed" in str(r) for r in d["reasons"]):
                    over_budget.add(d["run_id"])

    try:
        warm = claims(4, f"warm{ns}")
        send(warm, "warm")  # group joins happen here, not in the figures
        deadline = time.monotonic() + 120
        while len(done) < len(warm) and time.monotonic() < deadline:
            drain()
        for run_id in [g.run_id for g in warm]:
            sent.pop(run_id, None)
            done.pop(run_id, None)
        batch = claims(n, f"B{ns}")
        t0 = time.perf_counter()
        if burst:
            send(batch, "b")  # all at once: admission decides the pace
        else:
            interval = 1.0 / rate
            for i, g in enumerate(batch):
                while time.perf_counter() < t0 + i * interval:
                    drain()
                send([g], "b")
        deadline = time.monotonic() + 300 + (n / 20 if burst else 0)
        while len(done) < len(sent) and time.monotonic() < deadline:
            drain()
        last = max(done.values(), default=t0)
    finally:
        stop_worker(worker, 60)  # a clean stop exports the spans still queued
        cons.close()

    spans: dict[str, dict[str, float]] = {}
    for msg in read_all(settings, topics.traces):
        span = from_bytes(msg.value() or b"", TraceSpan)
        attrs = json.loads(span.attributes_json)
        step = attrs.get("durable.step")
        if step and span.status != "ERROR" and attrs.get("durable.action") == "run":
            spans.setdefault(span.run_id, {})[step] = (span.end_unix_nano - span.start_unix_nano) / 1e6
    if batches:
        shape = f"burst of {n}" if burst else f"{n} at {rate:g}/s"
        print(f"record batches written for {n} runs (+4 warm-up), {shape}, {settings.partitions} partitions:")
        names = [topics.name("fnol.reported"), topics.commands, topics.results, topics.journal]
        names += [topics.run_changelog, topics.name("decisions"), topics.traces, topics.dead_letters]
        print("\n".join(batch_table(bootstrap, names, settings.partitions, n + 4)))
    e2e = {r: (done[r] - sent[r]) * 1000 for r in done}
    work = {r: critical_path_ms(FNOL, spans.get(r, {})) for r in e2e}
    engine = {r: max(0.0, e2e[r] - work[r]) for r in e2e}
    state.cleanup()
    return {
        "to_last_s": last - t0,
        "per_s": len(done) / max(1e-9, last - t0),
        "kept_budget": len(done) - len(over_budget),
        "decided": len(done),
        "sent": len(sent),
        "routed": sum(1 for s in statuses.values() if s == "ROUTED"),
        "e2e_p50": pct(list(e2e.values()), 0.5),
        "e2e_p99": pct(list(e2e.values()), 0.99),
        "work_p50": pct(list(work.values()), 0.5),
        "engine_p50": pct(list(engine.values()), 0.5),
        "engine_p99": pct(list(engine.values()), 0.99),
        "share": sum(engine.values()) / max(1e-9, sum(e2e.values())),
        "share_p50": pct([engine[r] / e2e[r] for r in e2e if e2e[r] > 0], 0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="claims per second")
    parser.add_argument("--burst", action="store_true", help="produce every claim at once (low latency mode only)")
    parser.add_argument("--batches", action="store_true", help="count record batches per topic afterwards")
    parser.add_argument("--default-only", action="store_true", help="only the default (low latency) settings")
    args = parser.parse_args()
    os.environ.setdefault("DURABLE_MODEL_SPEED", "1")
    os.environ.setdefault("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    try:
        for low_latency in (True,) if args.burst or args.default_only else (True, False):
            r = run(bootstrap, args.claims, args.rate, low_latency, args.burst, args.batches)
            label = "default: low latency" if low_latency else "DURABLE_LOW_LATENCY=0"
            if args.burst:
                print(
                    f"burst of {r['sent']:.0f} claims at once ({label}): {r['decided']:.0f} decided, the last after "
                    f"{r['to_last_s']:.1f} s, {r['per_s']:.1f} decisions/s; {r['kept_budget']:.0f} kept their latency "
                    f"budget (counted from admission); end to end p50 {r['e2e_p50']:,.0f} ms p99 {r['e2e_p99']:,.0f} ms"
                )
                continue
            print(
                f"{label:11}  {r['decided']:.0f}/{r['sent']:.0f} claims at {args.rate:.0f}/s ({r['routed']:.0f} ROUTED)  "
                f"end to end p50 {r['e2e_p50']:,.0f} ms  p99 {r['e2e_p99']:,.0f} ms  | "
                f"work on critical path p50 {r['work_p50']:,.0f} ms  | engine p50 {r['engine_p50']:,.0f} ms "
                f"p99 {r['engine_p99']:,.0f} ms  share {r['share']:.1%} (p50 {r['share_p50']:.1%})"
            )
    finally:
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
