"""Benchmark: the HTTP gateway beside `durable produce`, and HTTP-to-decision latency at a steady rate.

Prints figures; asserts nothing. Runs on the embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Usage:
``python bench/gateway.py [--claims N] [--seconds S] [--connections C] [--rate R] [--decide-seconds D] [--low-latency 0|1] [--parts produce,accept,decide]``.

1. **durable produce**: N sample claims (unique claim ids) in one JSON-lines
   file, through ``durable produce fnol FILE`` (validation, tokenising,
   produce, acknowledgements); claims/s over the command's wall time, and
   over its time less an empty file's run (the process start).
2. **gateway, accepted requests/s**: ``durable gateway`` in its own process,
   no worker; ``wrk`` (apt package ``wrk``) with C connections for S seconds,
   each request a claim with a new id (a Lua script), so every one is
   validated, tokenised, recorded and acknowledged by the broker before its
   202. wrk's requests/s and latency percentiles; the non-202 count. Without
   wrk on the PATH, an async httpx loop with C concurrent clients stands in
   (and says so).
3. **HTTP to decision at R claims/s**: a gateway and a worker; claims sent
   open-loop at R/s for D seconds with ``Prefer: wait=10``; the time from the
   request to the 200 carrying the decision, p50/p99 (a 202, no decision in
   10 s, is counted apart); and the gateway's share, from the decision's
   ``decided_at_ms`` to the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SAMPLES, pct, start_worker, stop_worker
from connectors.gateway.keys import KeyStore, Role
from streams.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent


def _report(i: int, tag: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(SAMPLES[i % len(SAMPLES)])
    data["claim_id"] = f"{tag}{i:07d}"
    data.pop("tenant_id")
    return data


def _env(bootstrap: str, ns: str, state: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DURABLE_NAMESPACE": ns,
        "DURABLE_STATE_DIR": state,
        "DURABLE_GATEWAY_RATE_LIMITS": json.dumps({"default": {"per_second": 1e6, "burst": 1e6}}),
        "DURABLE_GATEWAY_MAX_LAG": str(10**9),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Gateway:
    """``durable gateway`` in a process of its own, with an operator key of tenant acme."""

    def __init__(self, bootstrap: str, ns: str) -> None:
        self.state = tempfile.mkdtemp(prefix="durable-bench-gw-")
        self.env = _env(bootstrap, ns, self.state)
        self.key, _ = KeyStore(Path(self.state) / "gateway" / "apikeys.json").create("acme", Role.OPERATOR)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "gateway", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a deadline-bounded start
        raise SystemExit("the gateway did not get ready in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def bench_produce(bootstrap: str, n: int) -> dict[str, float]:
    ns = f"gwprod{uuid.uuid4().hex[:6]}"
    state = tempfile.mkdtemp(prefix="durable-bench-")
    env = _env(bootstrap, ns, state)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(n):
            f.write(json.dumps({**_report(i, "P"), "tenant_id": "acme"}) + "\n")
    empty = Path(state) / "empty.jsonl"
    empty.write_text("")
    cmd = [sys.executable, "-m", "streams.cli", "produce", "fnol"]
    t0 = time.perf_counter()
    subprocess.run([*cmd, str(empty)], cwd=ROOT, env=env, check=True, capture_output=True)
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([*cmd, f.name], cwd=ROOT, env=env, check=True, capture_output=True)
    wall_s = time.perf_counter() - t0
    return {"claims": n, "wall_s": wall_s, "per_s": n / wall_s, "per_s_less_start": n / max(1e-9, wall_s - start_s)}


LUA = """
local counter = 0
local body_head = %s
local body_tail = %s
request = function()
  counter = counter + 1
  local id = string.format("W%%d-%%d-%%d", math.random(1, 1000000000), os.time(), counter)
  return wrk.format("POST", "/api/v1/agent/run", nil, body_head .. id .. body_tail)
end
local non202 = 0
response = function(status, headers, body)
  if status ~= 202 then non202 = non202 + 1 end
end
"""


def bench_accept_wrk(gw: Gateway, seconds: int, connections: int) -> dict[str, float | str]:
    template = json.dumps({**_report(1, "X"), "claim_id": "@@"})
    head, tail = template.split("@@")
    script = Path(gw.state) / "submit.lua"
    script.write_text(LUA % (json.dumps(head), json.dumps(tail)))
    out = subprocess.run(
        [
            "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
            "-H", f"Authorization: Bearer {gw.key}", "-H", "Content-Type: application/json", gw.url,
        ],
        capture_output=True, text=True, check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m is None:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "tool": "wrk",
        "requests": float(total.group(1)) if total else float("nan"),
        "per_s": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
    }


async def _accept_httpx(gw: Gateway, seconds: int, connections: int) -> dict[str, float | str]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def client(c: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            body = _report(next(counter), f"H{uuid.uuid4().hex[:6]}")
            t0 = time.perf_counter()
            r = await c.post("/api/v1/agent/run", json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    headers = {"Authorization": f"Bearer {gw.key}"}
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, limits=limits, timeout=30) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    return {
        "tool": "httpx async loop (wrk not installed)",
        "requests": float(len(latencies)),
        "per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "non_2xx": float(sum(n for code, n in codes.items() if code != 202)),
    }


async def _decide(gw: Gateway, rate: float, seconds: float) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {gw.key}", "Prefer": "wait=10"}
    decided: list[float] = []
    after_decision: list[float] = []  # decided_at_ms (the worker's clock) to the answer here: the gateway's share
    undecided = 0
    errors = 0
    tag = f"D{uuid.uuid4().hex[:6]}"
    # Enough connections for every request in flight (R/s x up to 10 s each): a pool queue would be the client's.
    limits = httpx.Limits(max_connections=int(rate * 12) + 10, max_keepalive_connections=int(rate * 12) + 10)
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=30, limits=limits) as c:
        # One run first, so the worker's group join is not in the figures.
        warm = await c.post("/api/v1/agent/run", json=_report(0, f"{tag}warm"), headers={"Prefer": "wait=10"})
        while warm.status_code != 200:
            warm = await c.post("/api/v1/agent/run", json=_report(0, f"{tag}warm"), headers={"Prefer": "wait=10"})

        async def one(i: int) -> None:
            nonlocal undecided, errors
            t0 = time.perf_counter()
            r = await c.post("/api/v1/agent/run", json=_report(i, tag))
            if r.status_code == 200:
                decided.append((time.perf_counter() - t0) * 1000)
                after_decision.append(time.time() * 1000 - float(r.json()["output"]["decided_at_ms"]))
            elif r.status_code == 202:
                undecided += 1
            else:
                errors += 1

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))  # open loop: on schedule
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return {
        "claims": float(n), "decided": float(len(decided)), "undecided_in_10s": float(undecided),
        "errors": float(errors), "p50_ms": pct(decided, 0.5), "p99_ms": pct(decided, 0.99),
        "after_p50_ms": pct(after_decision, 0.5), "after_p99_ms": pct(after_decision, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=5000, help="claims for the durable produce run")
    ap.add_argument("--seconds", type=int, default=10, help="load generator duration")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=25.0, help="claims/s for HTTP-to-decision")
    ap.add_argument("--decide-seconds", type=float, default=20.0)
    ap.add_argument(
        "--low-latency", choices=["0", "1"], default=None, help="the worker's DURABLE_LOW_LATENCY (default: as set)"
    )
    ap.add_argument("--parts", default="produce,accept,decide", help="which of produce,accept,decide to run")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker(log_path=str(Path(tempfile.mkdtemp()) / "broker.log")).start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    try:
        if "produce" in parts:
            produced = bench_produce(bootstrap, args.claims)
            print(
                f"durable produce   {produced['claims']:.0f} claims in {produced['wall_s']:.2f} s: "
                f"{produced['per_s']:,.0f} claims/s ({produced['per_s_less_start']:,.0f}/s less the process start)"
            )
        if "accept" in parts:
            gw = Gateway(bootstrap, f"gwload{uuid.uuid4().hex[:6]}")
            try:
                if shutil.which("wrk"):
                    acc = bench_accept_wrk(gw, args.seconds, args.connections)
                else:
                    acc = asyncio.run(_accept_httpx(gw, args.seconds, args.connections))
            finally:
                gw.stop()
            print(
                f"gateway POST      {acc['per_s']:,.0f} accepted requests/s, p50 {acc['p50_ms']:.1f} ms, "
                f"p99 {acc['p99_ms']:.1f} ms ({acc['requests']:.0f} requests, {acc['non_2xx']:.0f} not 202; "
                f"{args.connections} connections, {args.seconds} s, {acc['tool']})"
            )
        if "decide" not in parts:
            return
        low_latency = args.low_latency or os.environ.get("DURABLE_LOW_LATENCY", "1")
        ns = f"gwdecide{uuid.uuid4().hex[:6]}"
        gw = Gateway(bootstrap, ns)
        worker = start_worker({**gw.env, "DURABLE_LOW_LATENCY": low_latency})
        try:
            dec = asyncio.run(_decide(gw, args.rate, args.decide_seconds))
        finally:
            stop_worker(worker, 15)
            gw.stop()
        print(
            f"HTTP to decision  ({'low-latency' if low_latency != '0' else 'librdkafka-wait'} worker) at {args.rate:g} claims/s for {args.decide_seconds:g} s: p50 {dec['p50_ms']:,.0f} ms, "
            f"p99 {dec['p99_ms']:,.0f} ms ({dec['decided']:.0f} decided within the wait, "
            f"{dec['undecided_in_10s']:.0f} not within 10 s, {dec['errors']:.0f} errors); "
            f"decision to answer p50 {dec['after_p50_ms']:.0f} ms, p99 {dec['after_p99_ms']:.0f} ms"
        )
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
