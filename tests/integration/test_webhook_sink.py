"""`durable sink webhook` against the real broker and a loopback receiver that fails, hangs and recovers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest

from connectors.sinks.health import status
from connectors.sinks.webhook.redrive import changelog_topic
from connectors.sinks.webhook.signing import HEADER, verify
from streams.config import Settings
from streams.reading import read_all
from streams.topics import Topics
from tests.conftest import read_topic, wait_for
from tests.gateway_helpers import LiveGateway
from tests.sink_helpers import ROOT, decision, write_decisions

pytestmark = pytest.mark.integration

T = TypeVar("T")

SECRET = b"webhook-test-secret-0123456789abcdef"
T0 = 1_795_820_000_000
HUNG = 0  # the status recorded for a request answered 200 only after hanging past the sink's timeout


@dataclass
class Receiver:
    """A webhook endpoint: ``mode`` decides each answer; every request is recorded."""

    mode: str = "ok"  # ok | flaky | down
    blocked: set[str] = field(default_factory=set)  # run ids answered 503 whatever the mode
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    requests: list[tuple[str, bytes, str, int]] = field(default_factory=list)  # (key, body, signature, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: bytes) -> tuple[int, float]:
        """(status, seconds to hang first)."""
        with self.lock:
            roll = self.rng.random()
            if json.loads(body)["run_id"] in self.blocked:
                return 503, 0.0
        if self.mode == "down":
            return 503, 0.0
        if self.mode == "flaky":
            if roll < 0.05:
                return 200, 3.0  # past the sink's 1 s timeout: the sink must not count it delivered
            if roll < 0.45:
                return 500, 0.0
            if roll < 0.55:
                return 429, 0.0
        return 200, 0.0

    def acknowledged(self) -> dict[str, int]:
        """Decisions answered 200 in time, with how many times."""
        with self.lock:
            keys = [key for key, _, _, status in self.requests if status == 200]
        return {k: keys.count(k) for k in set(keys)}

    def answered(self) -> set[str]:
        """Decisions answered 200 at least once, in time or after a hang.

        A hung request's late 200 may or may not reach the sink: past its timeout it gives up, but a sink whose
        process did not run for longer than the hang (a loaded machine) finds the answer waiting and, rightly,
        counts the delivery done. Only the sink's table says which happened; tests wait on it.
        """
        with self.lock:
            return {key for key, _, _, status in self.requests if status in (200, HUNG)}


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, hang = state.answer(body)
            seen = (self.headers.get("Idempotency-Key", ""), body, self.headers.get(HEADER, ""))
            if hang:
                with state.lock:
                    # Recorded as it arrives, as not acknowledged: the sink gives up on it before the answer.
                    state.requests.append((*seen, HUNG))
                time.sleep(hang)  # a hung endpoint: the sink's timeout fires first
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            if not hang:
                with state.lock:
                    state.requests.append((*seen, status))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/decisions"
    finally:
        server.shutdown()
        server.server_close()


class Sinks:
    def __init__(self, settings: Settings, url: str, tmp: Path) -> None:
        self.settings, self.url, self.tmp = settings, url, tmp
        self.secret_file = tmp / "secret"
        self.secret_file.write_bytes(SECRET)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "sink",
                "webhook",
                "--url",
                self.url,
                "--secret-file",
                str(self.secret_file),
                "--name",
                name,
                "--timeout",
                "1",
                "--backoff",
                "0.05",
                "--max-backoff",
                "0.5",
                "--verbose",
                *extra,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
                "DURABLE_NAMESPACE": self.settings.namespace,
                "DURABLE_STATE_DIR": str(self.settings.state_dir / name),
                "DURABLE_PARTITIONS": str(self.settings.partitions),
            },
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def wait(self, condition: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.5) -> T:
        """:func:`wait_for`, failing with the tail of the newest sink's log (what it did, or why it stopped)."""
        try:
            return wait_for(condition, timeout_s, what, every_s)
        except AssertionError as exc:
            logs = sorted(self.tmp.glob("*.log"), key=lambda p: p.stat().st_mtime)
            tail = logs[-1].read_text(errors="replace")[-4000:] if logs else "(no sink log)"
            raise AssertionError(f"{exc}\n--- newest sink log ---\n{tail}") from None


@pytest.fixture
def sinks(settings: Settings, receiver: tuple[Receiver, str], tmp_path: Path) -> Iterator[Sinks]:
    procs = Sinks(settings, receiver[1], tmp_path)
    try:
        yield procs
    finally:
        for proc in procs.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def delivery_letters(settings: Settings) -> list[dict[str, object]]:
    return [d for d in read_topic(settings, Topics(settings.namespace).dead_letters) if d.get("kind") == "delivery"]


def assert_signed_and_keyed(receiver: Receiver) -> None:
    for key, body, signature, _ in receiver.requests:
        assert verify(SECRET, body, signature), f"signature of {key} does not verify"
        assert json.loads(body)["decision_id"] == key, "the idempotency key is the decision's id"


def test_a_flaky_endpoint_gets_every_decision_signed_and_keyed(
    settings: Settings, receiver: tuple[Receiver, str], sinks: Sinks
) -> None:
    state, _ = receiver
    state.mode = "flaky"
    decisions = [decision(f"fnol:acme:WH-{i:04d}", 1, T0 + i) for i in range(60)]
    write_decisions(settings, [b"garbage first", *decisions])
    sinks.start("wh-a", "--max-attempts", "30")  # ~55 % of requests fail: a budget no decision exhausts
    ids = {d.decision_id for d in decisions}
    sinks.wait(lambda: delivered(settings) >= ids or None, 180, "every decision delivered, by the sink's table")
    assert state.answered() >= ids, "the sink recorded a delivery the endpoint never answered 200"
    assert_signed_and_keyed(state)
    statuses = [status for _, _, _, status in state.requests]
    assert statuses.count(500) and statuses.count(429) and statuses.count(HUNG), "failures, 429s and hangs were retried"
    assert delivery_letters(settings) == [], "every delivery succeeded within its budget"


def deliveries(settings: Settings) -> dict[str, dict[str, object]]:
    """The sink's delivery table as its changelog holds it: each decision's latest state."""
    table: dict[str, dict[str, object]] = {}
    for msg in read_all(settings, changelog_topic(settings.namespace)):
        key = json.loads(msg.key() or b'""')
        if msg.value():
            table[key] = json.loads(msg.value() or b"{}")
        else:  # a tombstone: the sink forgot the entry (connectors.sinks.webhook.pruning)
            table.pop(key, None)
    return table


def delivered(settings: Settings) -> set[str]:
    """Decision ids the sink's table records as delivered."""
    return {k for k, v in deliveries(settings).items() if v["status"] == "delivered"}


def test_delivered_entries_are_forgotten_after_their_retention_even_those_delivered_before_a_restart(
    settings: Settings, receiver: tuple[Receiver, str], sinks: Sinks
) -> None:
    state, _ = receiver
    runs = [f"fnol:acme:WP-{i:04d}" for i in range(12)]
    first = [decision(run, 1, T0 + i) for i, run in enumerate(runs)]
    write_decisions(settings, list(first))
    proc = sinks.start("wh-prune", "--delivered-retention", "2")
    first_ids = {d.decision_id for d in first}

    def recorded() -> dict[str, dict[str, object]] | None:
        table = deliveries(settings)
        return table if all(table.get(k, {}).get("status") == "delivered" for k in first_ids) else None

    table = wait_for(recorded, 90, "the first decisions delivered and recorded")
    # Stopped only once its offsets are committed: the restarted sink does not read the first ones again.
    wait_for(
        lambda: all(p.lag == 0 for p in status(settings, "webhook").partitions) or None, 60, "the sink's commit"
    )
    proc.kill()
    proc.wait(10)
    past = max(int(str(table[k]["done_ms"])) for k in first_ids) / 1000 + 2
    wait_for(lambda: time.time() > past or None, 10, "the first deliveries to pass their 2 s retention")

    sinks.start("wh-prune", "--delivered-retention", "2")  # restarted in place: its index is rebuilt by a scan
    second = [decision(run, 2, T0 + 100 + i) for i, run in enumerate(runs)]  # same runs: the same partitions
    write_decisions(settings, list(second))
    second_ids = {d.decision_id for d in second}
    wait_for(lambda: set(state.acknowledged()) == first_ids | second_ids or None, 90, "the second ones delivered")
    table = wait_for(
        lambda: t if not first_ids & set(t := deliveries(settings)) else None,
        60,
        "the restarted sink to forget the entries delivered before the restart",
    )
    assert all(table[k]["status"] == "delivered" for k in second_ids), "entries within their retention are kept"
    assert all(n == 1 for n in state.acknowledged().values()), "forgetting an entry re-sends nothing"


def test_a_sigkilled_sink_resumes_from_its_table_sending_nothing_recorded_twice(
    settings: Settings, receiver: tuple[Receiver, str], sinks: Sinks
) -> None:
    state, _ = receiver
    state.mode = "flaky"
    stuck = "fnol:acme:WK-STUCK"
    state.blocked.add(stuck)  # its partition's committed offset cannot pass it: a restart re-reads what follows
    mine = [decision(stuck, 1, T0), decision(stuck, 2, T0 + 10)]
    others = [decision(f"fnol:acme:WK-{i:04d}", 1, T0 + i) for i in range(80)]
    write_decisions(settings, [mine[0], *others[:40], mine[1], *others[40:]])
    first = sinks.start("wh-1", "--max-attempts", "1000")
    key = mine[0].decision_id

    def mid_stream() -> dict[str, dict[str, object]] | None:
        table = deliveries(settings)
        done = [k for k, v in table.items() if v["status"] == "delivered"]
        return table if len(done) >= 30 and int(str(table.get(key, {}).get("attempts", 0))) >= 3 else None

    wait_for(mid_stream, 120, "30 deliveries recorded and the stuck run retried 3 times", every_s=0.2)
    first.kill()
    first.wait(10)
    table = deliveries(settings)  # what the killed sink had recorded
    recorded = {k for k, v in table.items() if v["status"] == "delivered"}
    attempts_before = int(str(table[key]["attempts"]))
    acknowledged_before = set(state.acknowledged())
    seen_before = len(state.requests)

    state.blocked.clear()
    sinks.start("wh-2", "--max-attempts", "1000")
    everything = {d.decision_id for d in [*mine, *others]}
    sinks.wait(lambda: delivered(settings) >= everything or None, 180, "every decision delivered")
    assert state.answered() >= everything, "the sink recorded a delivery the endpoint never answered 200"

    after = [k for k, _, _, _ in state.requests[seen_before:]]
    assert not recorded & set(after), "a delivery recorded as delivered was sent again after the restart"
    tail = (acknowledged_before - recorded) & set(after)
    print(
        f"acknowledged before SIGKILL: {len(acknowledged_before)}, recorded delivered: {len(recorded)}; "
        f"re-sent after restart (acknowledged, not yet recorded; same key): {len(tail)}"
    )
    assert_signed_and_keyed(state)
    final = deliveries(settings)[key]
    assert final["status"] == "delivered"
    assert int(str(final["attempts"])) >= attempts_before > 0, "the stuck delivery resumed its attempts, not anew"
    sent = [k for k, _, _, _ in state.requests if k.startswith(stuck)]
    last_of_first = max(i for i, k in enumerate(sent) if k == mine[0].decision_id)
    assert mine[1].decision_id not in sent[:last_of_first], "a run's second decision was sent before its first's end"


def dlq(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURABLE_NAMESPACE": settings.namespace,
        "DURABLE_PARTITIONS": str(settings.partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "dlq", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_an_endpoint_that_never_recovers_yields_dead_letters_that_redrive_delivers_once_it_does(
    settings: Settings, receiver: tuple[Receiver, str], sinks: Sinks
) -> None:
    state, _ = receiver
    state.mode = "down"
    decisions = [decision(f"fnol:acme:WD-{i:04d}", 1, T0 + i) for i in range(6)]
    write_decisions(settings, list(decisions))
    proc = sinks.start("wh-down", "--max-attempts", "3")
    letters = wait_for(
        lambda: found if len(found := delivery_letters(settings)) >= 6 else None,
        120,
        "a delivery dead letter per decision",
    )
    assert {d["dead_letter_id"] for d in letters} == {f"{d.decision_id}/delivery/webhook/1" for d in decisions}
    assert all("HTTP 503 after 3 attempt(s)" in str(d["reason"]) for d in letters), letters
    assert len(state.requests) == 18, "three attempts per decision"
    assert proc.poll() is None

    listed = dlq(settings, "list")
    assert listed.returncode == 0 and listed.stdout.count("delivery") >= 6, listed.stdout + listed.stderr

    state.mode = "ok"  # the endpoint recovers; the operator redrives one letter, then all the others
    first_id = f"{decisions[0].decision_id}/delivery/webhook/1"
    one = dlq(settings, "redrive", first_id)
    assert one.returncode == 0 and f"{first_id}: redriven" in one.stdout, one.stdout + one.stderr
    # An operator of the run's tenant redrives a second one over HTTP: it goes to the sink, like the CLI's.
    second_id = f"{decisions[1].decision_id}/delivery/webhook/1"
    with LiveGateway(settings) as gw, gw.client(gw.key("acme")) as http:
        answer = http.post(f"/api/v1/deadletters/{second_id}/redrive")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "requested"
        wait_for(lambda: state.acknowledged().get(decisions[1].decision_id) or None, 60, "the HTTP redrive delivered")
        repeat = http.post(f"/api/v1/deadletters/{second_id}/redrive")
        assert repeat.status_code == 200 and repeat.json()["status"] == "already redriven", repeat.text
    rest = dlq(settings, "redrive", "--all")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    # --all takes the open letters only: the four others, not the ones already redriven.
    assert first_id not in rest.stdout and second_id not in rest.stdout, rest.stdout
    assert rest.stdout.count(": redriven") == 4, rest.stdout
    wait_for(lambda: len(state.acknowledged()) == 6 or None, 60, "every redriven delivery acknowledged")
    assert set(state.acknowledged()) == {d.decision_id for d in decisions}
    assert all(n == 1 for n in state.acknowledged().values()), "each redriven delivery acknowledged once"
    assert_signed_and_keyed(state)
    again = dlq(settings, "redrive", first_id)
    assert again.returncode == 0 and "already redriven" in again.stdout, again.stdout + again.stderr
    assert dlq(settings, "list", "--open").stdout.count("delivery") == 0, "every delivery letter is redriven"

    later = [decision(f"fnol:acme:WL-{i:04d}", 1, T0 + i) for i in range(4)]
    write_decisions(settings, list(later))
    wait_for(lambda: len(state.acknowledged()) == 10 or None, 60, "later decisions delivered")


def test_one_runs_failing_deliveries_hold_back_no_other_run_and_a_runs_decisions_stay_in_order(
    settings: Settings, receiver: tuple[Receiver, str], sinks: Sinks
) -> None:
    state, _ = receiver
    stuck = "fnol:acme:WS-STUCK"
    state.blocked.add(stuck)
    mine = [decision(stuck, 1, T0), decision(stuck, 2, T0 + 10)]
    others = [decision(f"fnol:acme:WS-{i:04d}", 1, T0 + i) for i in range(40)]
    write_decisions(settings, [mine[0], *others[:20], mine[1], *others[20:]])
    sinks.start("wh-order", "--max-attempts", "1000")
    wait_for(lambda: len(state.acknowledged()) == len(others) or None, 120, "every other run's decision delivered")
    assert not {d.decision_id for d in mine} & set(state.acknowledged()), "the stuck run is still being retried"

    state.blocked.clear()  # its endpoint recovers
    wait_for(lambda: len(state.acknowledged()) == len(others) + 2 or None, 60, "the stuck run's decisions delivered")
    order = [key for key, _, _, status in state.requests if status == 200 and key.startswith(stuck)]
    assert order == [mine[0].decision_id, mine[1].decision_id], "a run's decisions arrive in order"
    attempts_of_second = [key for key, _, _, _ in state.requests if key == mine[1].decision_id]
    assert len(attempts_of_second) == 1, "the second decision waited for the first, it was not tried alongside it"
