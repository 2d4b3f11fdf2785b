"""Benchmark: the FNOL triage agent end to end, and the engine's share of its latency.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/fnol.py [--claims N --rate R | --burst]``, or the
open loop ``--workers N --rate R --duration D [--profile DIR]`` (N worker processes sharing the partitions,
latency counted from each claim's due time, py-spy profiles of every worker summarised by bench/spysummary.py).

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
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer

from bench.common import batch_table, claims, cpu_seconds, decisions_reader, pct, spec_label, start_workers
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


STEADY_AFTER_S = 4.0


def py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` (GIL holders only, raw collapsed stacks) for ``seconds``, in the background."""
    exe = os.environ.get("PY_SPY", "/tmp/spyenv/bin/py-spy")
    command = [exe, "record", "--gil", "--nonblocking", "--pid", str(pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(
    bootstrap: str,
    n: int,
    rate: float,
    low_latency: bool,
    burst: bool = False,
    batches: bool = False,
    workers: str = "1",
    broker_pid: int | None = None,
    profile: Path | None = None,
    profile_s: float = 20.0,
) -> dict[str, Any]:
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
    group = start_workers(env, workers, Path(state.name))
    prod = Producer(client_config(bootstrap, **{"linger.ms": 1, "log_level": 3}))
    cons = decisions_reader(settings, topics.name("decisions"))
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    statuses: dict[str, str] = {}
    over_budget: set[str] = set()

    def send(batch: list[Accepted], tag: str, at: float | None = None, flush: bool = True) -> None:
        for g in batch:
            # An open loop's latency counts from when the claim was due (``at``), not from when this
            # process got round to it: a late sender must not hide the queue it would have met.
            sent[g.run_id] = at if at is not None else time.perf_counter()
            prod.produce(
                topics.name("fnol.reported"),
                key=g.run_id,
                value=encode(FNOL.input_schema, g.record),
                partition=partition_for(g.run_id, settings.partitions),
            )
            prod.poll(0)
        if flush:
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

    pids = [*group.pids, *([broker_pid] if broker_pid else [])]
    spies: list[subprocess.Popen[bytes]] = []
    try:
        group.wait_settled()  # every process on its partitions before the first claim
        warm = claims(4, f"warm{ns}")
        send(warm, "warm")  # group joins happen here, not in the figures
        deadline = time.monotonic() + 120
        while len(done) < len(warm) and time.monotonic() < deadline:
            drain()
        for run_id in [g.run_id for g in warm]:
            sent.pop(run_id, None)
            done.pop(run_id, None)
        batch = claims(n, f"B{ns}")
        cpu0 = {pid: cpu_seconds(pid) for pid in pids}
        t0 = time.perf_counter()
        if burst:
            send(batch, "b")  # all at once: admission decides the pace
        else:
            interval = 1.0 / rate
            for i, g in enumerate(batch):
                due = t0 + i * interval
                while time.perf_counter() < due:
                    drain()
                if profile is not None and not spies and time.perf_counter() >= t0 + 5:
                    spies = [py_spy(pid, profile / f"worker{k}.raw", profile_s) for k, pid in enumerate(group.pids)]
                send([g], "b", at=due, flush=False)
            prod.flush()
        sent_by = time.perf_counter()
        cpu1 = {pid: cpu_seconds(pid) for pid in pids}
        deadline = time.monotonic() + 300 + (n / 20 if burst else 0)
        while len(done) < len(sent) and time.monotonic() < deadline:
            drain()
        last = max(done.values(), default=t0)
    finally:
        group.stop()  # a clean stop exports the spans still queued
        cons.close()
        for spy in spies:
            spy.wait(profile_s + 30)

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
    load_s = max(1e-9, sent_by - t0)
    used = {pid: (cpu1[pid] - cpu0[pid]) / load_s for pid in pids}
    # Decisions/s in steady state: from when the first claims' decisions are due (a run takes ~2 s of model
    # time) to the last claim sent; the ramp at the start and the drain at the end are left out.
    ramp = min(STEADY_AFTER_S, load_s / 2)
    in_window = sum(1 for at in done.values() if t0 + ramp <= at <= sent_by) / max(1e-9, load_s - ramp)
    return {
        "worker_cpu": [used[pid] for pid in group.pids],
        "broker_cpu": used[broker_pid] if broker_pid else float("nan"),
        "load_s": load_s,
        "in_window_per_s": in_window,
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
    parser.add_argument(
        "--workers", default="1", help="worker processes sharing the partitions: N, or O+E orchestrator+executor"
    )
    parser.add_argument("--duration", type=float, help="open loop for this many seconds (claims = rate x duration)")
    parser.add_argument("--profile", type=Path, help="py-spy record every worker from 5 s into the load into DIR")
    parser.add_argument("--profile-s", type=float, default=20.0, help="seconds each profile records")
    args = parser.parse_args()
    if args.duration:
        args.claims = int(args.rate * args.duration)
        args.default_only = True
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DURABLE_MODEL_SPEED", "1")
    os.environ.setdefault("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    try:
        for low_latency in (True,) if args.burst or args.default_only else (True, False):
            r = run(
                bootstrap,
                args.claims,
                args.rate,
                low_latency,
                args.burst,
                args.batches,
                args.workers,
                broker.pid if broker else None,
                args.profile,
                args.profile_s,
            )
            label = "default: low latency" if low_latency else "DURABLE_LOW_LATENCY=0"
            if args.burst:
                print(
                    f"burst of {r['sent']:.0f} claims at once ({label}): {r['decided']:.0f} decided, the last after "
                    f"{r['to_last_s']:.1f} s, {r['per_s']:.1f} decisions/s; {r['kept_budget']:.0f} kept their latency "
                    f"budget (counted from admission); end to end p50 {r['e2e_p50']:,.0f} ms p99 {r['e2e_p99']:,.0f} ms"
                )
                continue
            if args.duration:
                print(
                    f"open loop {args.rate:g} claims/s for {r['load_s']:.0f} s, {spec_label(args.workers)} ({label}): "
                    f"{r['decided']:.0f}/{r['sent']:.0f} decided, {r['in_window_per_s']:.1f} decisions/s in steady state "
                    f"({r['per_s']:.1f}/s to the last); end to end p50 {r['e2e_p50']:,.0f} ms p99 {r['e2e_p99']:,.0f} ms"
                    f" (from each claim's due time); {r['kept_budget']:.0f} kept their latency budget; engine p50 "
                    f"{r['engine_p50']:,.0f} ms p99 {r['engine_p99']:,.0f} ms; CPU while sending: workers "
                    f"{' + '.join(f'{x:.0%}' for x in r['worker_cpu'])}, broker {r['broker_cpu']:.0%}",
                    flush=True,
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
