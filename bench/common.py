"""What the benchmark scripts share: claims to send, percentiles, and worker processes to start and stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, all its threads (librdkafka's included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S  # utime, stime: fields 14 and 15 of stat(5)


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


def worker_roles(spec: str) -> list[str]:
    """The ``--role`` of each worker process of a spec: ``"2"`` two ``all`` processes, ``"1+1"`` one
    orchestrator and one executor process, ``"2+1"`` two orchestrators and one executor."""
    if "+" in spec:
        orchestrators, executors = (int(x) for x in spec.split("+", 1))
        return ["orchestrator"] * orchestrators + ["executor"] * executors
    return ["all"] * int(spec)


def spec_label(spec: str) -> str:
    roles = worker_roles(spec)
    if "+" in spec:
        return f"{roles.count('orchestrator')} orch + {roles.count('executor')} exec processes"
    return f"{len(roles)} worker process{'es' if len(roles) > 1 else ''}"


@dataclass
class WorkerGroup:
    """Worker processes started together for one measurement, each with its role, name and log (``-v``)."""

    roles: list[str]
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def texts(self) -> list[str]:
        return [log.read_text(errors="replace") if log.exists() else "" for log in self.logs]

    def failed(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def assignment_lines(self) -> list[int]:
        """How many partition assignments each process has logged so far."""
        return [len(_ASSIGNED.findall(text)) for text in self.texts()]

    def wait_settled(self, timeout_s: float = 90.0, quiet_s: float = 3.0) -> None:
        """Until every process has been given partitions and no assignment has been logged for ``quiet_s``.

        With several processes the groups rebalance as each joins; a figure taken meanwhile measures
        the rebalance. (A bench, not a test: it polls the logs.)
        """
        deadline = time.monotonic() + timeout_s
        last, since = self.assignment_lines(), time.monotonic()
        while time.monotonic() < deadline:
            if self.failed():
                raise RuntimeError(f"a worker process exited; logs in {self.logs}")
            now = self.assignment_lines()
            if now != last:
                last, since = now, time.monotonic()
            elif all(now) and time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker processes not settled on their partitions in {timeout_s:.0f} s: {last}")

    def partitions(self) -> list[str]:
        """Each process's partitions, from its last assignments: ``o[0, 1] e[0, 1]`` (orchestrator, executor)."""
        out = []
        for text in self.texts():
            parts = []
            orch = [(m.group(1), int(m.group(2))) for m in _ORCH_ASSIGNED.finditer(text)]
            if orch:
                # One rebalance logs its partitions within a second of each other: keep the last rebalance's.
                last_second = orch[-1][0][:19]
                parts.append(f"o{sorted(p for at, p in orch if at[:19] == last_second)}")
            execs = _EXEC_ASSIGNED.findall(text)
            if execs:
                parts.append(f"e{execs[-1]}")
            out.append(" ".join(parts) or "-")
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # all at once: they leave their groups together
        for proc in self.procs:
            stop_worker(proc)


_ORCH_ASSIGNED = re.compile(r"^(\S+ \S+) INFO streams\.orchestrator: partition (\d+) assigned", re.M)
_EXEC_ASSIGNED = re.compile(r"executor now runs commands from partitions (\[[\d, ]*\])")
_ASSIGNED = re.compile(r"partition \d+ assigned|executor now runs commands from partitions")


def start_workers(env: dict[str, str], spec: str, logdir: Path, *args: str) -> WorkerGroup:
    """The worker processes of ``spec`` (:func:`worker_roles`), named ``bench0``..., logging at INFO to ``logdir``."""
    roles = worker_roles(spec)
    procs, logs = [], []
    for i, role in enumerate(roles):
        log = logdir / f"worker{i}-{role}.log"
        procs.append(start_worker(env, f"bench{i}", "--role", role, "-v", *args, log=log))
        logs.append(log)
    return WorkerGroup(roles, procs, logs)
