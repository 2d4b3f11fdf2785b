"""What the benchmark scripts share: claims to send, percentiles, and worker processes to start and stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from processors.engine.inputs import Accepted, parse_lines
from processors.fnol import FNOL
from streams.config import Settings
from streams.kafka import LOW_LATENCY_FETCH_WAIT_MS
from streams.kafka_config import client_config
from streams.signing import KEY_ENV, use_fresh_key

# Workers sign their decisions: every benchmark's workers share one throwaway key (unless one is set).
_KEY_DIR = tempfile.TemporaryDirectory(prefix="durable-bench-keys-")
if not os.environ.get(KEY_ENV):
    use_fresh_key(Path(_KEY_DIR.name))

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = (Path(__file__).resolve().parent.parent / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()


def claims(n: int, tag: str, vary: bool = True) -> list[Accepted]:
    """``n`` valid tokenised claims with ids ``<tag><i>``: the samples in turn, or (``vary=False``) the first."""
    out = []
    for i in range(n):
        data = json.loads(SAMPLES[i % len(SAMPLES)] if vary else SAMPLES[0])
        data["claim_id"] = f"{tag}{i:06d}"
        good = next(iter(parse_lines(FNOL, [json.dumps(data)])))
        assert isinstance(good, Accepted)
        out.append(good)
    return out


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def decisions_reader(settings: Settings, topic: str) -> Consumer:
    """A consumer assigned to every partition of ``topic`` from the start, with short fetch waits."""
    c = Consumer(
        client_config(
            settings.bootstrap_servers,
            **{
                "group.id": f"{settings.namespace}-bench",
                "log_level": 3,
                "fetch.wait.max.ms": LOW_LATENCY_FETCH_WAIT_MS,
                "enable.auto.commit": False,
            },
        )
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    return c


def batch_table(bootstrap: str, topics: list[str], partitions: int, runs: int) -> list[str]:
    """Lines of a table: records, record batches, records per batch and batches per run, for each topic.

    Counted exactly by :class:`streams.batches.BatchCounter` over every partition, so it needs the
    embedded broker's plaintext listener.
    """
    from streams.batches import BatchCounter

    counter = BatchCounter(bootstrap)
    lines = [f"{'topic':<34} {'records':>8} {'batches':>8} {'rec/batch':>9} {'batches/run':>11} {'max/partition':>13}"]
    try:
        for topic in topics:
            counts = [counter.count(topic, p, max_fetches=100_000) for p in range(partitions)]
            records = sum(c.records for c in counts)
            batches = sum(c.batches for c in counts)
            lines.append(
                f"{topic.split('.', 1)[1]:<34} {records:>8} {batches:>8} {records / max(1, batches):>9.1f}"
                f" {batches / max(1, runs):>11.2f} {max(c.batches for c in counts):>13}"
            )
    finally:
        counter.close()
    return lines


def start_worker(env: dict[str, str], name: str = "bench", *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``durable worker --name NAME ARGS`` in a process of its own with ``env``; its output discarded, or appended to ``log``.

    Nothing waits here for it to join its groups: each benchmark starts its clock after a first decision, or
    counts the join in what it measures, and says which.
    """
    command = [sys.executable, "-m", "streams.cli", "worker", "--name", name, *args]
    if log is None:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)


def stop_worker(proc: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> int | None:
    """Stop a worker cleanly (SIGTERM: it finishes its batch and exports the spans still queued); SIGKILL after
    ``timeout_s``. Its exit code (None for no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
