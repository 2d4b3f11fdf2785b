"""Soak: many FNOL runs against the embedded broker, to see whether throughput and latency stay flat.

Usage: ``python bench/soak.py --claims 50000 --rate 40 [--burst 2000 --every 60] [--speed 50]
[--retention 30 --marker 60]``

A `durable worker` process (low latency, as `DURABLE_LOW_LATENCY=1`) runs the FNOL
workflow with the simulated model ``--speed`` times faster than its real latency
profile. Claims are produced at ``--rate`` per second, plus, with ``--burst``, that
many at once every ``--every`` seconds. Every ``--window`` seconds it prints the
decisions per second in that window, end-to-end p50/p99 of the claims decided in
it, the largest partition (in record batches) of the topics the worker reads
(how near the broker's wall they are, see streams.wall) and the wall warnings the worker has
logged so far; then the state it keeps (streams.retention): bytes in its state directory
(RocksDB), run states and expired-run markers in its run table (opened read-only beside the
worker), and records in the run changelog (its end offsets: the embedded broker never compacts,
so this grows; on real Kafka compaction leaves one record per state or marker, i.e. the two
table columns). ``--retention``/``--marker`` set the worker's DURABLE_RUN_RETENTION_S and
DURABLE_EXPIRED_MARKER_S. At the end: record batches per topic (bench.common.batch_table).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer, TopicPartition

from bench.common import batch_table, claims, decisions_reader, pct, start_worker, stop_worker
from processors.fnol import FNOL
from schemas import decode, encode
from streams import wall
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import LOW_LATENCY_SLICE_S, partition_for, reader, take
from streams.kafka_config import client_config
from streams.runtable import RunTable
from streams.topics import Topics, ensure_topics


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (files RocksDB deletes while we walk are skipped)."""
    total = 0
    for f in path.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:
            continue
    return total


def table_counts(path: Path, changelog: str) -> dict[str, int]:
    """Run states and expired-run markers in a worker's run table, read beside it (-1 each if it cannot open)."""
    try:
        table = RunTable(path, changelog, read_only=True)
    except Exception:
        return {"states": -1, "markers": -1}
    try:
        return table.counts()
    finally:
        table.close()


def end_offsets(settings: Settings, topic: str) -> int:
    """The sum of a topic's partitions' end offsets: the records ever written to it."""
    c = reader(settings)
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(settings.partitions))
    finally:
        c.close()


def soak(bootstrap: str, args: argparse.Namespace) -> None:
    ns = f"soak{uuid.uuid4().hex[:6]}"
    state = tempfile.TemporaryDirectory(prefix="durable-soak-")
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=ns,
        state_dir=Path(state.name),
        low_latency=True,
        partitions=args.partitions,
    )
    topics = Topics(ns)
    inputs, decisions = topics.name("fnol.reported"), topics.name("decisions")
    ensure_topics(settings, [inputs, decisions])
    log_path = Path(state.name) / "worker.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DURABLE_NAMESPACE": ns,
        "DURABLE_STATE_DIR": state.name,
        "DURABLE_PARTITIONS": str(args.partitions),
        "DURABLE_LOW_LATENCY": "1",
        "DURABLE_MODEL_SPEED": str(args.speed),
        "DURABLE_FNOL_FRAUD_FAILURE_RATE": "0",
        "DURABLE_WALL_PROBE_S": str(args.window),
        **({"DURABLE_RUN_RETENTION_S": str(args.retention)} if args.retention is not None else {}),
        **({"DURABLE_EXPIRED_MARKER_S": str(args.marker)} if args.marker is not None else {}),
    }
    worker = start_worker(env, "soak", log=log_path)
    prod = Producer(client_config(bootstrap, **{"linger.ms": 5, "log_level": 3}))
    cons = decisions_reader(settings, decisions)
    hot = [inputs, topics.results, topics.control, topics.commands]
    pending = claims(args.claims, f"S{ns}")
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    print(
        f"soak: {args.claims} claims at {args.rate:g}/s"
        + (f" + bursts of {args.burst} every {args.every:g} s" if args.burst else "")
        + f", model {args.speed:g}x faster, {args.partitions} partitions, namespace {ns}"
        + (f", run retention {args.retention:g} s" if args.retention is not None else "")
        + (f", marker {args.marker:g} s" if args.marker is not None else ""),
        flush=True,
    )
    table_path = Path(state.name) / ns / "soak"
    print(
        f"{'t s':>6} {'decided':>8} {'per s':>6} {'e2e p50':>8} {'p99':>7} {'largest hot partition':>28} {'warnings':>8}"
        f" {'state MB':>8} {'states':>7} {'markers':>7} {'changelog':>9}"
    )

    def produce(n: int) -> None:
        for _ in range(min(n, len(pending))):
            g = pending.pop()
            sent[g.run_id] = time.perf_counter()
            prod.produce(
                inputs, key=g.run_id, value=encode(FNOL.input_schema, g.record), partition=partition_for(g.run_id, 4)
            )
        prod.poll(0)

    t0 = time.perf_counter()
    window_start, window_done = t0, 0
    last_burst = t0
    by_bursts = 0  # claims sent in bursts, not counted against the steady rate
    window_e2e: list[float] = []
    try:
        while (pending or len(done) < len(sent)) and worker.poll() is None:
            now = time.perf_counter()
            due = int((now - t0) * args.rate) - (len(sent) - by_bursts)
            if due > 0:
                produce(due)
            if args.burst and now - last_burst >= args.every:
                before = len(sent)
                produce(args.burst)
                by_bursts += len(sent) - before
                last_burst = now
            for m in take(cons, 1000, 0.01, LOW_LATENCY_SLICE_S):
                if m.error():
                    continue
                _, d = decode(m.value() or b"")
                run_id = str(d["run_id"])
                if run_id in sent and run_id not in done:
                    done[run_id] = time.perf_counter()
                    window_e2e.append((done[run_id] - sent[run_id]) * 1000)
            if now - window_start >= args.window:
                largest = max(wall.measure(settings, hot), key=lambda x: x.batches, default=None)
                where = (
                    f"{largest.topic.split('.', 1)[1]}[{largest.partition}] {largest.batches:,} batches"
                    if largest
                    else "-"
                )
                warnings = log_path.read_text(errors="replace").count("embedded broker wall")
                rate = (len(done) - window_done) / (now - window_start)
                counts = table_counts(table_path, topics.run_changelog)
                print(
                    f"{now - t0:>6.0f} {len(done):>8} {rate:>6.1f} {pct(window_e2e, 0.5):>6.0f}ms"
                    f" {pct(window_e2e, 0.99):>5.0f}ms {where:>28} {warnings:>8}"
                    f" {dir_bytes(table_path) / 1e6:>8.1f} {counts['states']:>7} {counts['markers']:>7}"
                    f" {end_offsets(settings, topics.run_changelog):>9}",
                    flush=True,
                )
                window_start, window_done, window_e2e = now, len(done), []
            if now - t0 > args.max_s:
                print(f"stopped after {args.max_s:.0f} s with {len(sent) - len(done)} claims undecided")
                break
    finally:
        prod.flush(30)
        stop_worker(worker, 60)
        cons.close()
    elapsed = max(done.values(), default=t0) - t0
    print(f"{len(done)}/{len(sent)} decided in {elapsed:.0f} s ({len(done) / max(elapsed, 1e-9):.1f}/s)")
    restarts = log_path.read_text(errors="replace").count("restarting this worker's consumers")
    print(f"worker restarts for the wall: {restarts}; worker exit code {worker.returncode}")
    counts = table_counts(table_path, topics.run_changelog)
    print(
        f"state at the end: {dir_bytes(table_path) / 1e6:.1f} MB in the state directory, {counts['states']} run states"
        f" and {counts['markers']} expired markers in the run table (what compaction would leave of the changelog),"
        f" {end_offsets(settings, topics.run_changelog)} changelog records written"
    )
    names = [inputs, topics.commands, topics.results, topics.journal, topics.run_changelog, decisions, topics.traces]
    print("\n".join(batch_table(bootstrap, names, settings.partitions, len(sent))))
    state.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=40.0, help="steady claims per second")
    ap.add_argument("--burst", type=int, default=0, help="claims sent at once every --every seconds")
    ap.add_argument("--every", type=float, default=60.0)
    ap.add_argument("--partitions", type=int, default=4, help="the namespace's partitions (DURABLE_PARTITIONS)")
    ap.add_argument("--speed", type=float, default=50.0, help="how much faster than real the simulated model is")
    ap.add_argument("--window", type=float, default=30.0, help="seconds per printed line")
    ap.add_argument("--max-s", type=float, default=3600.0, help="give up after this long")
    ap.add_argument("--retention", type=float, default=None, help="the worker's run retention, s (its default: 7 days)")
    ap.add_argument("--marker", type=float, default=None, help="how long expired markers stay, s (default: 30 days)")
    args = ap.parse_args()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    try:
        soak(external or (broker.bootstrap_servers if broker else ""), args)
    finally:
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
