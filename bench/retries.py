"""Benchmark: how punctually durable retries fire.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/retries.py [--runs N]``.

Every run has one step whose first attempt fails; its retry waits a backoff of
``--backoff`` seconds (+- 50 % jitter, so due times spread out), kept as a
timer in the run's state. For each retry:

- **fire lateness**: when the orchestrator wrote the retry's command (the
  record's producer timestamp) minus its due time. This is the engine's timer
  accuracy; the target is within max(50 ms, 10 % of the backoff).
- **start lateness**: when an executor started the attempt minus the due time:
  fire lateness plus the command's trip over Kafka to an executor.

Both modes are measured: the default settings and DURABLE_LOW_LATENCY.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import TopicPartition

from bench.common import claims, pct
from processors.engine import RetryPolicy, RunFailure, RunResult, Step, StepContext, Workflow
from processors.engine.inputs import Accepted
from schemas import from_bytes
from schemas.models import JournalEvent, StepCommand, StepResult
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.intake import produce_inputs
from streams.kafka import read_to_end, reader
from streams.reading import read_all
from streams.topics import Topics
from streams.worker import Worker


async def fails_once(ctx: StepContext) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise ConnectionError("first attempt fails")
    return {"attempt": ctx.attempt}


def _output(run: RunResult | RunFailure) -> dict[str, Any]:
    return {
        "decision_id": run.output_id,
        "claim_id": run.input["claim_id"],
        "tenant_id": run.input["tenant_id"],
        "run_id": run.run_id,
        "status": "ROUTED" if isinstance(run, RunResult) else "FAILED",
        "queue": "bench",
        "severity": "LOW",
        "reserve": 0.0,
        "currency": "GBP",
        "documents_requested": [],
        "reasons": [],
        "decided_at_ms": run.at_ms,
    }


def workflow(backoff_s: float) -> Workflow:
    policy = RetryPolicy(max_attempts=2, initial_backoff_s=backoff_s, jitter=0.5)
    return Workflow(
        name="retrybench",
        steps=(Step("call", fails_once, retry=policy),),
        input_topic="fnol.reported",
        input_schema="durable.fnol.FnolReported",
        output_topic="decisions",
        output_schema="durable.fnol.RoutedDecision",
        run_id_of=lambda r: f"rb-{r['claim_id']}",
        result=_output,
        on_failure=_output,
    )


def measure(bootstrap: str, runs: int, backoff_s: float, low_latency: bool) -> dict[str, Any]:
    ns = f"rbench{uuid.uuid4().hex[:6]}"
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=ns,
        state_dir=Path(f".durable/bench/{ns}"),
        worker_name="bench",
        low_latency=low_latency,
        max_runs_in_flight=runs,  # every run waits out its backoff at once: none held back by admission
    )
    topics = Topics(ns)
    wf = workflow(backoff_s)
    worker = Worker(settings, [wf]).start()
    try:
        batch = claims(runs, "r", vary=False)
        produce_inputs(settings, wf, [Accepted(g.line_no, f"rb-{g.record['claim_id']}", g.record) for g in batch])
        deadline = time.monotonic() + 120 + 2 * backoff_s
        while time.monotonic() < deadline:
            if len(read_all(settings, topics.name("decisions"))) >= runs:
                break
            time.sleep(0.5)  # polling the decisions topic, bounded by the deadline
        else:
            raise TimeoutError("not every run was decided")
    finally:
        worker.stop()
        worker.join(20)

    due: dict[str, int] = {}
    for msg in read_all(settings, topics.journal):
        event = from_bytes(msg.value() or b"", JournalEvent)
        if event.kind.value == "STEP_RETRY_WAITING" and event.detail_json:
            due[event.run_id] = json.loads(event.detail_json)["due_at_ms"]
    fired: dict[str, int] = {}
    c = reader(settings)
    try:
        starts = [TopicPartition(topics.commands, p, 0) for p in range(settings.partitions)]
        for msg in read_to_end(c, starts):
            command = from_bytes(msg.value() or b"", StepCommand)
            if command.attempt == 2:
                fired[command.run_id] = msg.timestamp()[1]
    finally:
        c.close()
    started = {}
    for msg in read_all(settings, topics.results):
        result = from_bytes(msg.value() or b"", StepResult)
        if result.attempt == 2:
            started[result.run_id] = result.started_at_ms
    fire = [fired[r] - due[r] for r in due if r in fired]
    start = [started[r] - due[r] for r in due if r in started]
    backoffs = [d for d in due.values()]
    tolerance = max(50.0, 0.1 * backoff_s * 1000)
    return {
        "retries": len(fire),
        "fire": fire,
        "start": start,
        "early": sum(1 for x in fire if x < 0),
        "within": sum(1 for x in fire if 0 <= x <= tolerance) / max(1, len(fire)),
        "tolerance": tolerance,
        "spread": (min(backoffs), max(backoffs)) if backoffs else (0, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500, help="runs, each retried once")
    parser.add_argument("--backoff", type=float, default=1.0, help="backoff in seconds (jitter +- 50 %)")
    args = parser.parse_args()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    try:
        for low_latency in (False, True):
            r = measure(bootstrap, args.runs, args.backoff, low_latency)
            label = "low latency" if low_latency else "default"
            fire, start = r["fire"], r["start"]
            print(
                f"{label:11}  {r['retries']} retries, backoff {args.backoff:.1f} s +- 50 %  | "
                f"fire lateness p50 {pct(fire, 0.5):.0f} ms  p99 {pct(fire, 0.99):.0f} ms  max {max(fire):.0f} ms  "
                f"early {r['early']}  within max(50 ms, 10 %) = {r['tolerance']:.0f} ms: {r['within']:.1%}  | "
                f"executor start lateness p50 {pct(start, 0.5):.0f} ms  p99 {pct(start, 0.99):.0f} ms"
            )
    finally:
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
