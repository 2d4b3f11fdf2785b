"""Benchmark: decisions/s through `durable sink postgres` and `durable sink webhook`, and their lag at 25/s.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set, against the PostgreSQL of
``DURABLE_TEST_POSTGRES`` (default: 127.0.0.1:5432, trust auth), in a
database created for the run and dropped after. Usage:
``python bench/sinks.py [--backlog N] [--rate R] [--seconds S]``.

- **backlog**: N decisions already on the topic; one sink drains them. The
  rate is taken between the first and the last row's ``stored_at``, so the
  group join (about 3 s on the embedded broker) is not in it.
- **steady**: decisions written at R/s for S seconds (each stamped with the
  time it was written); the lag is that stamp to the row's ``stored_at``.

The webhook sink reads the same topic (its own group) and POSTs to a
loopback receiver answering 200 at once; the same two figures are taken from
the receiver's arrival times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics
from streams.writer import Writer
from tests.sink_helpers import ROOT, decision, fresh_database, query, signed, write_decisions


def _wait_rows(dsn: str, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if query(dsn, "SELECT count(*) FROM decisions")[0][0] >= n:
                return
        except Exception:
            pass  # the sink has not migrated the database yet
        time.sleep(0.2)  # polling a deadline-bounded wait
    raise SystemExit(f"only {query(dsn, 'SELECT count(*) FROM decisions')[0][0]} of {n} rows after {timeout_s}s")


class _Receiver:
    """A loopback webhook endpoint recording when each decision first arrived (ms)."""

    def __init__(self) -> None:
        arrivals: dict[str, tuple[float, int]] = {}
        self.arrivals = arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                arrivals.setdefault(body["claim_id"], (time.time() * 1000, int(body["decided_at_ms"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a deadline-bounded wait
        if len(self.arrivals) < n:
            raise SystemExit(f"webhook: only {len(self.arrivals)} of {n} decisions after {timeout_s}s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(bootstrap: str, backlog: int, rate: float, seconds: float) -> None:
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=f"bench{uuid.uuid4().hex[:8]}",
        partitions=4,
        state_dir=Path(tempfile.mkdtemp(prefix="sink-bench-")),
    )
    databases = fresh_database()
    dsn = next(databases)
    start = time.time_ns() // 1_000_000
    write_decisions(settings, [decision(f"fnol:acme:B-{i:06d}", 1, start + i) for i in range(backlog)])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DURABLE_NAMESPACE": settings.namespace,
        "DURABLE_STATE_DIR": str(settings.state_dir),
    }
    sink = subprocess.Popen([sys.executable, "-m", "streams.cli", "sink", "postgres", "--dsn", dsn], cwd=ROOT, env=env)
    receiver = _Receiver()
    secret = settings.state_dir / "hook.secret"
    secret.write_text("bench-webhook-secret-0123456789")
    hook = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "sink", "webhook", "--url", receiver.url, "--secret-file", str(secret)],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_rows(dsn, backlog, 600)
        first, last = query(dsn, "SELECT min(stored_at), max(stored_at) FROM decisions")[0]
        span = (last - first).total_seconds()
        print(f"postgres backlog: {backlog} decisions drained in {span:.2f}s: {backlog / span:,.0f} decisions/s")
        receiver.wait(backlog, 600)
        times = [at for at, _ in receiver.arrivals.values()]
        hook_span = (max(times) - min(times)) / 1000
        print(
            f"webhook backlog: {backlog} decisions delivered in {hook_span:.2f}s: {backlog / hook_span:,.0f} decisions/s"
        )

        n = int(rate * seconds)
        topic = Topics(settings.namespace).name("decisions")
        writer = Writer(settings)
        t0 = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))  # pacing the load generator
            d = decision(f"fnol:acme:S-{i:06d}", 1, time.time_ns() // 1_000_000)
            writer.send(topic, signed(d), key=d.run_id, partition=partition_for(d.run_id, settings.partitions))
            writer.flush(10)  # each decision on its own, as the orchestrator writes them under light load
        writer.close()
        _wait_rows(dsn, backlog + n, 120)
        lags = [
            float(ms)
            for (ms,) in query(
                dsn,
                "SELECT extract(epoch FROM stored_at) * 1000 - decided_at_ms FROM decisions WHERE claim_id LIKE %s",
                "S-%",
            )
        ]
        receiver.wait(backlog + n, 120)
        hook_lags = [at - decided for claim, (at, decided) in receiver.arrivals.items() if claim.startswith("S-")]
        print(
            f"webhook steady: {n} decisions at {rate:g}/s: written -> received p50 {_pct(hook_lags, 0.5):.0f} ms, "
            f"p99 {_pct(hook_lags, 0.99):.0f} ms"
        )
        print(
            f"postgres steady: {n} decisions at {rate:g}/s: written -> row p50 {_pct(lags, 0.5):.0f} ms, "
            f"p99 {_pct(lags, 0.99):.0f} ms, max {max(lags):.0f} ms"
        )
    finally:
        for proc in (sink, hook):
            proc.kill()
            proc.wait(10)
        receiver.server.shutdown()
        for _ in databases:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        run(os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.backlog, args.rate, args.seconds)
        return
    with EmbeddedBroker(log_path=str(Path(tempfile.mkdtemp()) / "broker.log")) as broker:
        run(broker.bootstrap_servers, args.backlog, args.rate, args.seconds)


if __name__ == "__main__":
    main()
