"""Benchmark: a 5-step saga of trivial steps, beside a raw Kafka produce-consume loop.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/steps.py [--concurrency 1,64
--duration 20] [--workers 1,2,1+1] [--kinds kafka,local] [--sequential N --inflight N] [--skip-open]``.

Measured on one broker:
- raw: confluent-kafka produce -> consume round trip (sequential, p50/p99) and
  throughput (N records produced and consumed); every other figure is also
  given as a ratio to these;
- closed loop, the shape peers publish: a ``durable worker`` process runs the
  saga, C runs are kept in flight for D seconds (each finished run replaced at
  once), giving sagas/s, steps/s, saga latency p50/p99 and the worker
  process's CPU per step (the engine's own cost, in µs); C=1 is the
  sequential case. For steps over Kafka (command out, result back) and steps
  declared ``local`` (run in the orchestrator, made durable by its
  journal/changelog write). With ``--workers 1,2,1+1`` each loop at C>1 is
  also run with two ``all`` processes and with an orchestrator process plus
  an executor process, sharing the partitions (4, Settings.partitions): the
  CPU is summed over them, and the partitions each took are printed; the
  orchestrators' records per poll (streams.batchsizes) follow each loop;
- open burst (unless ``--skip-open``), in this process: sequential runs and N
  runs started at once, with and without the low-latency settings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import claims, cpu_seconds, decisions_reader, pct, spec_label, start_workers
from bench.trust import print_costs
from processors.engine import RunFailure, RunResult, Step, StepContext, Workflow
from processors.engine.inputs import Accepted
from schemas import decode, encode
from streams.batchsizes import BatchSizes, from_log
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import LOW_LATENCY_FETCH_WAIT_MS, LOW_LATENCY_SLICE_S, partition_for, take
from streams.kafka_config import client_config
from streams.topics import Topics, ensure_topics
from streams.worker import Worker

STEPS = 5


def trivial(ctx: StepContext) -> dict[str, Any]:
    return {"i": len(ctx.deps)}


def _result(run: RunResult) -> dict[str, Any]:
    return {
        "decision_id": run.output_id,
        "claim_id": run.input["claim_id"],
        "tenant_id": run.input["tenant_id"],
        "run_id": run.run_id,
        "status": "ROUTED",
        "queue": "bench",
        "severity": "LOW",
        "reserve": 0.0,
        "currency": "GBP",
        "documents_requested": [],
        "reasons": [],
        "decided_at_ms": run.at_ms,
    }


def _failed(failure: RunFailure) -> dict[str, Any]:
    run = RunResult(failure.run_id, failure.input, {}, failure.at_ms, failure.output_id, failure.generation)
    return {**_result(run), "status": "FAILED"}


def saga(local: bool) -> Workflow:
    steps = tuple(
        Step(f"s{i}", trivial, after=(f"s{i - 1}",) if i > 1 else (), local=local) for i in range(1, STEPS + 1)
    )
    return Workflow(
        name="bench5",
        steps=steps,
        input_topic="fnol.reported",
        input_schema="durable.fnol.FnolReported",
        output_topic="decisions",
        output_schema="durable.fnol.RoutedDecision",
        run_id_of=lambda r: f"bench-{r['claim_id']}",
        result=_result,
        on_failure=_failed,
    )


# Loaded by the closed loop's worker process (``--workflow bench.steps:SAGA_KAFKA``).
SAGA_KAFKA = saga(local=False)
SAGA_LOCAL = saga(local=True)
ROOT = Path(__file__).resolve().parent.parent


def closed_loop(
    bootstrap: str,
    local: bool,
    concurrency: int,
    duration: float,
    workers: str = "1",
    broker_pid: int | None = None,
    warmup: float = 3.0,
) -> dict[str, Any]:
    """C runs kept in flight by a closed loop for ``duration`` s, against the ``durable worker`` processes of
    ``workers`` (bench.common.worker_roles: ``"2"`` two processes sharing the partitions, ``"1+1"`` an
    orchestrator and an executor process)."""
    ns = f"benchcl{uuid.uuid4().hex[:6]}"
    state = tempfile.TemporaryDirectory(prefix="durable-bench-")
    settings = Settings(bootstrap_servers=bootstrap, namespace=ns, state_dir=Path(state.name), worker_name="bench")
    topics = Topics(ns)
    ensure_topics(settings, [topics.name("fnol.reported"), topics.name("decisions")])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DURABLE_NAMESPACE": ns,
        "DURABLE_STATE_DIR": state.name,
        "DURABLE_PARTITIONS": str(settings.partitions),
        "DURABLE_MAX_RUNS_IN_FLIGHT": str(max(100, 2 * concurrency)),
        "PYTHONPATH": str(ROOT),
    }
    flow = "bench.steps:SAGA_LOCAL" if local else "bench.steps:SAGA_KAFKA"
    group = start_workers(env, workers, Path(state.name), "--workflow", flow)
    prod = Producer(client_config(bootstrap, **{"linger.ms": 0, "log_level": 3}))
    cons = decisions_reader(settings, topics.name("decisions"))
    template = claims(1, "cl", vary=False)[0].record
    started: dict[str, float] = {}
    counter = iter(range(10**9))

    def start_one() -> None:
        claim = f"CL{next(counter):08d}"
        run_id = f"bench-{claim}"
        started[run_id] = time.perf_counter()
        prod.produce(
            topics.name("fnol.reported"),
            key=run_id,
            value=encode("durable.fnol.FnolReported", {**template, "claim_id": claim}),
            partition=partition_for(run_id, settings.partitions),
        )
        prod.poll(0)

    def finished() -> list[tuple[str, float]]:
        now_done = []
        for m in take(cons, 1000, 0.05, LOW_LATENCY_SLICE_S):
            if m.error():
                continue
            _, d = decode(m.value() or b"")
            if d["run_id"] in started:
                now_done.append((d["run_id"], time.perf_counter()))
        return now_done

    pids = [*group.pids, *([broker_pid] if broker_pid else [])]
    try:
        # The workers join their groups first (every process given partitions, no rebalance left), then
        # one run per partition goes through before the clock starts.
        group.wait_settled()
        for _ in range(settings.partitions):
            start_one()
        deadline = time.perf_counter() + 90
        while started:
            for run_id, _ in finished():
                started.pop(run_id, None)
            if time.perf_counter() > deadline or group.failed():
                raise RuntimeError("the bench workers did not decide the warm-up runs in 90 s")
        for _ in range(concurrency):
            start_one()
        t0 = time.perf_counter()
        window = (t0 + warmup, t0 + warmup + duration)
        cpu0: dict[int, float] | None = None
        bench0 = 0.0
        latencies: list[float] = []
        while True:
            now = time.perf_counter()
            if cpu0 is None and now >= window[0]:
                cpu0 = {pid: cpu_seconds(pid) for pid in pids}
                bench0 = time.process_time()
            if now >= window[1]:
                cpu1 = {pid: cpu_seconds(pid) for pid in pids}
                bench1 = time.process_time()
                break
            for run_id, at in finished():
                begun = started.pop(run_id)
                if window[0] <= at < window[1]:
                    latencies.append((at - begun) * 1000)
                start_one()  # closed loop: a finished run is replaced at once
        prod.flush(10)
        sharing = group.partitions()
    finally:
        group.stop()
        cons.close()
    texts = group.texts()
    batches = BatchSizes()
    for role, text in zip(group.roles, texts, strict=True):
        if role != "executor":
            batches.merge(from_log(text))
    state.cleanup()
    used = {pid: cpu1[pid] - (cpu0 or cpu1)[pid] for pid in pids}
    worker_cpu = sum(used[pid] for pid in group.pids)
    sagas = len(latencies)
    return {
        "sagas_per_s": sagas / duration,
        "steps_per_s": sagas * STEPS / duration,
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "cpu_us_per_step": worker_cpu / max(1, sagas * STEPS) * 1e6,
        "worker_cpu_share": worker_cpu / duration,
        "per_worker_cpu_share": [used[pid] / duration for pid in group.pids],
        "broker_cpu_share": used[broker_pid] / duration if broker_pid else float("nan"),
        "bench_cpu_share": (bench1 - bench0) / duration,
        "partitions": sharing,
        "batches": batches,
    }


def print_batches(sizes: BatchSizes) -> None:
    """The orchestrators' records per poll (each poll one checkpoint), from their logs at stop."""
    if not sizes.batches:
        print("    orchestrator batches: none logged")
        return
    hist = "  ".join(f"{label}:{n}" for label, n in sizes.buckets() if n)
    print(
        f"    orchestrator batches (whole run, warm-up included): {sizes.batches:,} polls, "
        f"{sizes.records / sizes.batches:.1f} records/poll mean, p50 {sizes.quantile(0.5)} p90 {sizes.quantile(0.9)} "
        f"p99 {sizes.quantile(0.99)} max {max(sizes.counts)}"
    )
    print(f"    polls by records taken: {hist}")


def raw_loop(bootstrap: str, n: int, seq: int) -> dict[str, float]:
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, partitions=1)
    ensure_topics(settings, [topic])
    p = Producer(client_config(bootstrap, **{"linger.ms": 2, "log_level": 3}))
    c = Consumer(
        client_config(
            bootstrap,
            **{"group.id": topic, "log_level": 3, "fetch.wait.max.ms": LOW_LATENCY_FETCH_WAIT_MS, "enable.auto.commit": False},
        )
    )
    c.assign([TopicPartition(topic, 0, 0)])
    lat = []
    for _ in range(seq):
        t = time.perf_counter()
        p.produce(topic, b"x" * 100)
        p.flush()
        while True:
            got = c.poll(1.0)  # poll returns as soon as one record is there
            if got is not None and not got.error():
                break
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, b"x" * 100)
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    seen = 0
    while seen < n:
        seen += sum(1 for m in c.consume(1000, 1.0) if not m.error())
    elapsed = time.perf_counter() - t
    c.close()
    return {"rtt_p50_ms": pct(lat, 0.5), "rtt_p99_ms": pct(lat, 0.99), "msgs_per_s": n / elapsed}


def engine(bootstrap: str, local: bool, low_latency: bool, sequential: int, inflight: int) -> dict[str, float]:
    ns = f"bench{uuid.uuid4().hex[:6]}"
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=ns,
        state_dir=Path(f".durable/bench/{ns}"),
        worker_name="bench",
        low_latency=low_latency,
        max_runs_in_flight=max(inflight, sequential),  # this bench's shape: all its runs in flight at once
    )
    wf = saga(local)
    topics = Topics(ns)
    ensure_topics(settings, [topics.name("fnol.reported"), topics.name("decisions")])
    worker = Worker(settings, [wf]).start()
    prod = Producer(client_config(bootstrap, **{"linger.ms": 1, "log_level": 3}))
    cons = decisions_reader(settings, topics.name("decisions"))

    def send(batch: list[Accepted]) -> dict[str, float]:
        sent = {}
        for g in batch:
            run_id = f"bench-{g.record['claim_id']}"
            sent[run_id] = time.perf_counter()
            prod.produce(
                topics.name("fnol.reported"),
                key=run_id,
                value=encode("durable.fnol.FnolReported", g.record),
                partition=partition_for(run_id, settings.partitions),
            )
        prod.flush()
        return sent

    def wait(sent: dict[str, float], timeout: float = 120) -> dict[str, float]:
        done: dict[str, float] = {}
        deadline = time.perf_counter() + timeout
        while len(done) < len(sent):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(sent) - len(done)} runs not decided")
            for m in take(cons, 1000, 0.05, LOW_LATENCY_SLICE_S):
                if m.error():
                    continue
                _, d = decode(m.value() or b"")
                if d["run_id"] in sent and d["run_id"] not in done:
                    done[d["run_id"]] = time.perf_counter()
        return {r: (done[r] - sent[r]) * 1000 for r in sent}

    # Warm up: group joins and partition assignment happen here, not in the figures.
    wait(send(claims(4, "warm", vary=False)), timeout=60)
    run_lat: list[float] = []
    for g in claims(sequential, "seq", vary=False):
        run_lat.extend(wait(send([g])).values())
    t = time.perf_counter()
    lat = wait(send(claims(inflight, "par", vary=False)))
    elapsed = time.perf_counter() - t
    worker.stop()
    worker.join(20)
    return {
        "run_p50_ms": pct(run_lat, 0.5),
        "run_p99_ms": pct(run_lat, 0.99),
        "step_p50_ms": pct(run_lat, 0.5) / STEPS,
        "step_p99_ms": pct(run_lat, 0.99) / STEPS,
        "steps_per_s": inflight * STEPS / elapsed,
        "inflight_run_p50_ms": statistics.median(lat.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,64", help="runs kept in flight by the closed loop (comma list)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each closed loop is measured")
    parser.add_argument("--sequential", type=int, default=100, help="open burst: runs one at a time")
    parser.add_argument("--inflight", type=int, default=1000, help="open burst: runs started together")
    parser.add_argument("--raw", type=int, default=50_000, help="records for the raw throughput loop")
    parser.add_argument(
        "--workers",
        default="1",
        help="worker process specs to compare (comma list): N = N processes of every role, O+E = O orchestrator"
        " and E executor processes; all share the topics' partitions",
    )
    parser.add_argument("--kinds", default="kafka,local", help="closed loop step kinds: kafka, local or both")
    parser.add_argument("--skip-open", action="store_true", help="only the raw and closed-loop figures")
    args = parser.parse_args()

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    try:
        print_costs()  # what signing each decision and chaining each journal event add (bench/trust.py)
        raw = raw_loop(bootstrap, args.raw, 500)
        rtt = raw["rtt_p50_ms"]
        print(
            f"raw kafka (fetch wait {LOW_LATENCY_FETCH_WAIT_MS} ms)  round trip p50 {rtt:.2f} ms  p99 {raw['rtt_p99_ms']:.2f} ms  "
            f"throughput {raw['msgs_per_s']:,.0f} msg/s"
        )
        kinds = [k == "local" for k in args.kinds.split(",")]
        for local in kinds:
            for c in (int(x) for x in args.concurrency.split(",")):
                base: float | None = None
                # Scale-out is measured under load: C=1 keeps one run in flight, which one process serves.
                for spec in args.workers.split(",")[: None if c > 1 else 1]:
                    r = closed_loop(bootstrap, local, c, args.duration, spec, broker.pid if broker else None)
                    label = f"closed loop, {'local' if local else 'kafka'} steps, C={c}, {spec_label(spec)}"
                    base = base or r["steps_per_s"]
                    print(
                        f"{label}\n    {r['sagas_per_s']:,.1f} sagas/s  {r['steps_per_s']:,.0f} steps/s "
                        f"({r['steps_per_s'] / raw['msgs_per_s']:.4f}x raw; {r['steps_per_s'] / base:.2f}x the first "
                        f"worker spec)  saga p50 {r['p50_ms']:.1f} ms ({r['p50_ms'] / rtt:.1f} round trips)  "
                        f"p99 {r['p99_ms']:.1f} ms\n    worker CPU {r['cpu_us_per_step']:,.0f} µs/step summed over "
                        f"processes ({r['worker_cpu_share']:.0%} of a core: "
                        f"{' + '.join(f'{x:.0%}' for x in r['per_worker_cpu_share'])}), broker "
                        f"{r['broker_cpu_share']:.0%}, load generator {r['bench_cpu_share']:.0%}; partitions "
                        f"{' | '.join(r['partitions'])}",
                        flush=True,
                    )
                    print_batches(r["batches"])
        if args.skip_open:
            return
        for local, low_latency in ((False, False), (True, False), (False, True), (True, True)):
            r = engine(bootstrap, local, low_latency, args.sequential, args.inflight)
            label = f"{'local' if local else 'kafka'} steps{', low latency (default)' if low_latency else ', DURABLE_LOW_LATENCY=0'}"
            print(
                f"{label:29} per step p50 {r['step_p50_ms']:.2f} ms  p99 {r['step_p99_ms']:.2f} ms  "
                f"(run p50 {r['run_p50_ms']:.1f} ms, p99 {r['run_p99_ms']:.1f} ms)  "
                f"{r['steps_per_s']:,.0f} steps/s with {args.inflight} runs in flight  "
                f"| per step / raw round trip: {r['step_p50_ms'] / rtt:.1f}x"
            )
    finally:
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
