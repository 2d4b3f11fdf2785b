"""Benchmark: how long replays take.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage: ``python bench/replay.py [--runs N]``.

N FNOL claims (30 % of fraud-service calls failing, so runs carry retries)
are run by a worker; then, with the worker stopped:

- **journal replay**: every run's journal is read (one pass over the journal
  topic) and every finished attempt is re-executed with recorded values
  served back and compared, as ``durable replay RUN_ID`` does for one;
- **window replay**: the N inputs are replayed in a sandbox namespace and the
  decisions diffed, as ``durable replay --from --to`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import claims
from processors.engine.replay import recorded_run, replay_run
from processors.fnol import FNOL
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.intake import produce_inputs
from streams.journal import journals
from streams.reading import read_all
from streams.sandbox import replay_window
from streams.topics import Topics
from streams.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0.3")
    # Replay cost is the subject, not the agent's latency: a fast simulated model, and a latency budget that
    # the embedded broker's default hops cannot blow (a run over budget is decided by its timing, which a
    # replay under another load does not reproduce).
    os.environ.setdefault("DURABLE_MODEL_SPEED", "50")
    os.environ.setdefault("DURABLE_FNOL_BUDGETS", '{"default": {"latency_s": 120}}')
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    state = tempfile.TemporaryDirectory(prefix="durable-bench-")
    try:
        ns = f"rpbench{uuid.uuid4().hex[:6]}"
        settings = Settings(bootstrap_servers=bootstrap, namespace=ns, state_dir=Path(state.name), worker_name="b")
        topics = Topics(ns)
        batch = claims(args.runs, "RB-")
        worker = Worker(settings, [FNOL]).start()
        start_ms = int(time.time() * 1000) - 1
        produce_inputs(settings, FNOL, batch)
        end_ms = int(time.time() * 1000) + 1
        deadline = time.monotonic() + 600
        while len(read_all(settings, topics.name("decisions"))) < args.runs and time.monotonic() < deadline:
            time.sleep(1.0)  # polling the decisions topic, bounded by the deadline
        worker.stop()
        worker.join(30)

        t = time.perf_counter()
        runs = journals(settings)
        read_s = time.perf_counter() - t
        t = time.perf_counter()

        async def replay_all() -> tuple[int, int, int]:
            attempts = same = reproduced = 0
            for events in runs.values():
                replayed = await replay_run(recorded_run(events), FNOL)
                attempts += len(replayed.attempts)
                same += sum(1 for a in replayed.attempts if a.verdict == "same")
                reproduced += replayed.reproduced
            return attempts, same, reproduced

        attempts, same, reproduced = asyncio.run(replay_all())
        replay_s = time.perf_counter() - t
        print(
            f"journal replay of {len(runs)} runs: {read_s + replay_s:.2f} s "
            f"(journal read {read_s:.2f} s, {attempts} attempts re-executed in {replay_s:.2f} s, "
            f"{replay_s / max(1, len(runs)) * 1000:.2f} ms per run); {same} same, {reproduced} failures reproduced, "
            f"{attempts - same - reproduced} other"
        )
        t = time.perf_counter()
        window = replay_window(settings, FNOL, start_ms, end_ms, f"{ns}-sandbox", ignore=frozenset({"decided_at_ms"}))
        print(
            f"window replay of {window.runs} runs in a sandbox: {time.perf_counter() - t:.1f} s "
            f"(same {window.count('same')}, changed {window.count('changed')}, missing {window.count('missing')})"
        )
    finally:
        if broker:
            broker.stop()
        state.cleanup()


if __name__ == "__main__":
    main()
