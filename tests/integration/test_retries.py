"""Retries with durable backoff, dead letters, compensation, timeouts and redrive, on a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams import deadletters as dlq
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, read_topic, wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Any]:
    started: list[Worker] = []

    def start(workflow: str) -> Worker:
        worker = Worker(settings, load_workflows([f"tests.workflows:{workflow}"])).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        worker.join(15)


def by_run(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in journal(settings):
        runs[e["run_id"]].append(e)
    return {r: sorted(events, key=lambda e: e["seq"]) for r, events in runs.items()}


def decided(settings: Settings, run_ids: set[str], worker: Worker, timeout_s: float = 60) -> list[dict[str, Any]]:
    wait_for(
        lambda: {d["run_id"] for d in outcomes(settings)} >= run_ids or worker.failed, timeout_s, "every decision"
    )
    assert worker.failed is None
    return [d for d in outcomes(settings) if d["run_id"] in run_ids]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_flaky_step_waits_out_its_backoff_then_succeeds(
    settings: Settings, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_FAIL_ATTEMPTS", "2")
    orders = sample_orders(3, prefix="F")
    worker = start_worker("FLAKY")
    produce_orders(settings, orders)
    run_ids = {c.run_id for c in orders}
    assert {d["status"] for d in decided(settings, run_ids, worker)} == {"DONE"}
    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)

    commands = {c["command_id"]: c for c in read_topic(settings, Topics(settings.namespace).commands)}
    for run_id, events in by_run(settings).items():
        flaky = [(e["kind"], e["attempt"]) for e in events if e["step"] == "flaky"]
        assert flaky == [
            ("STEP_SCHEDULED", 1),
            ("STEP_FAILED", 1),
            ("STEP_RETRY_WAITING", 1),
            ("STEP_SCHEDULED", 2),
            ("STEP_FAILED", 2),
            ("STEP_RETRY_WAITING", 2),
            ("STEP_SCHEDULED", 3),
            ("STEP_SUCCEEDED", 3),
        ]
        waits = [json.loads(e["detail_json"]) for e in events if e["kind"] == "STEP_RETRY_WAITING"]
        assert 270 <= waits[0]["backoff_ms"] <= 330 and 540 <= waits[1]["backoff_ms"] <= 660  # 0.3 s x2, 10 % jitter
        for wait, attempt in zip(waits, (2, 3), strict=True):
            command = commands[f"{run_id}/flaky/{attempt}"]
            assert command["scheduled_at_ms"] == wait["due_at_ms"]
            # Written no earlier than due (the record's broker timestamp is when it was produced).
            produced_at = _timestamp(settings, command["_partition"], command["_offset"])
            assert produced_at >= wait["due_at_ms"], (produced_at, wait)


def _timestamp(settings: Settings, partition: int, offset: int) -> int:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "ts-reader", "log_level": 3})
    try:
        c.assign([TopicPartition(Topics(settings.namespace).commands, partition, offset)])
        msg = wait_for(lambda: c.poll(0.2), 10, "the command record")
        return int(msg.timestamp()[1])
    finally:
        c.close()


def test_a_non_retryable_error_is_dead_lettered_at_once(settings: Settings, start_worker: Any) -> None:
    [order] = sample_orders(1, prefix="D")
    worker = start_worker("DECLINES")
    produce_orders(settings, [order])
    [decision] = decided(settings, {order.run_id}, worker)
    assert decision["status"] == "FAILED" and "Declined" in decision["reasons"][0]
    kinds = [(e["kind"], e["step"]) for e in by_run(settings)[order.run_id]]
    assert kinds.count(("STEP_SCHEDULED", "pay")) == 1 and ("STEP_DEAD_LETTERED", "pay") in kinds
    [letter] = dlq.letters(settings)
    assert letter.letter.dead_letter_id == f"{order.run_id}/pay/run/1"
    assert letter.letter.kind == "step" and "is not retryable" in letter.letter.reason
    assert [a["type"] for a in json.loads(letter.letter.attempts_json or "")] == ["Declined"]


def test_exhaustion_dead_letters_and_compensates_in_reverse_order(settings: Settings, start_worker: Any) -> None:
    [order] = sample_orders(1, prefix="S")
    worker = start_worker("SAGA")
    produce_orders(settings, [order])
    [decision] = decided(settings, {order.run_id}, worker)
    assert decision["status"] == "FAILED" and decision["outcome"] == "COMPENSATED"
    assert "compensated: charge, reserve" in decision["reasons"][0]
    events = by_run(settings)[order.run_id]
    undo = [(e["kind"], e["step"]) for e in events if e["kind"].startswith("COMPENSATION_")]
    assert undo == [
        ("COMPENSATION_SCHEDULED", "charge"),
        ("COMPENSATION_SUCCEEDED", "charge"),
        ("COMPENSATION_SCHEDULED", "reserve"),
        ("COMPENSATION_SUCCEEDED", "reserve"),
    ]
    assert events[-1]["kind"] == "RUN_COMPENSATED"
    assert_exactly_once(settings, {order.run_id}, OUTPUT_TOPIC)

    # The dead letter, through the CLI.
    letter_id = f"{order.run_id}/notify/run/3"
    listed = cli(settings, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert letter_id in listed.stdout and "ConnectionError" in listed.stdout and "open" in listed.stdout
    shown = cli(settings, "dlq", "show", letter_id)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert [a["attempt"] for a in detail["attempts"]] == [1, 2, 3]
    assert all("ConnectionError" in a["traceback"] and a["finished_at_ms"] >= a["started_at_ms"] for a in detail["attempts"])
    assert detail["run_id"] == order.run_id and detail["step"] == "notify"
    only_input = cli(settings, "dlq", "show", letter_id, "--input")
    assert set(json.loads(only_input.stdout)["deps"]) == {"charge", "audit"}


def test_a_failing_compensation_is_retried_then_dead_lettered(
    settings: Settings, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UNDO_FAILS", "1")
    [order] = sample_orders(1, prefix="U")
    worker = start_worker("SAGA")
    produce_orders(settings, [order])
    [decision] = decided(settings, {order.run_id}, worker)
    assert decision["outcome"] == "FAILED" and "compensation failed: charge" in decision["reasons"][0]
    events = by_run(settings)[order.run_id]
    charge = [(e["kind"], e["attempt"]) for e in events if e["step"] == "charge" and "COMPENSATION" in e["kind"]]
    assert [k for k, _ in charge].count("COMPENSATION_FAILED") == 3
    assert charge[-1] == ("COMPENSATION_DEAD_LETTERED", 3)
    assert ("COMPENSATION_SUCCEEDED", "reserve") in [(e["kind"], e["step"]) for e in events]  # the rest still undone
    letters = {e.letter.dead_letter_id: e.letter for e in dlq.letters(settings)}
    assert letters[f"{order.run_id}/charge/compensate/3"].kind == "compensation"

    # The ledger is back: redrive every open letter of the compensation's step; only it is retried.
    monkeypatch.delenv("TEST_UNDO_FAILS")
    redriven = cli(settings, "dlq", "redrive", "--all", "--step", "charge")
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    assert f"{order.run_id}/charge/compensate/3: redriven" in redriven.stdout and "notify" not in redriven.stdout
    wait_for(lambda: len([d for d in outcomes(settings) if d["run_id"] == order.run_id]) == 2, 60, "a new decision")
    latest = by_run(settings)[order.run_id]
    assert latest[-1]["kind"] == "RUN_COMPENSATED"
    assert ("COMPENSATION_SUCCEEDED", "charge", 4) in [(e["kind"], e["step"], e["attempt"]) for e in latest]
    assert_exactly_once(settings, {order.run_id}, OUTPUT_TOPIC)


def test_a_hung_step_times_out_without_holding_up_other_runs(settings: Settings, start_worker: Any) -> None:
    hung = sample_orders(1, prefix="HANG")
    others = sample_orders(5, prefix="OK")
    worker = start_worker("HANGS")
    produce_orders(settings, hung + others)
    decided(settings, {c.run_id for c in hung + others}, worker)
    runs = by_run(settings)
    failures = [json.loads(e["detail_json"]) for e in runs[hung[0].run_id] if e["kind"] == "STEP_FAILED"]
    assert [f["type"] for f in failures] == ["TimeoutError", "TimeoutError"]
    assert "timed out after 500 ms" in failures[0]["message"]
    first_timeout_at = next(e["at_ms"] for e in runs[hung[0].run_id] if e["kind"] == "STEP_FAILED")
    for c in others:
        done = next(e for e in runs[c.run_id] if e["kind"] == "RUN_COMPLETED")
        assert done["at_ms"] < first_timeout_at + 5_000  # not queued behind the 5 s blocking calls


def test_one_slow_retrying_run_does_not_delay_others_on_its_partition(
    settings: Settings, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_FAIL_ATTEMPTS", "1")
    monkeypatch.setenv("TEST_FLAKY_PREFIX", "SLOW")
    [slow] = sample_orders(1, prefix="SLOW")
    home = partition_for(slow.run_id, settings.partitions)
    neighbours = [c for c in sample_orders(80, prefix="N") if partition_for(c.run_id, settings.partitions) == home][:8]
    assert len(neighbours) == 8
    worker = start_worker("FLAKY_LONG")
    produce_orders(settings, [slow, *neighbours])
    decided(settings, {c.run_id for c in [slow, *neighbours]}, worker)
    runs = by_run(settings)
    retry_fired = next(
        e["at_ms"] for e in runs[slow.run_id] if e["kind"] == "STEP_SCHEDULED" and e["step"] == "flaky" and e["attempt"] == 2
    )
    for c in neighbours:
        completed = next(e["at_ms"] for e in runs[c.run_id] if e["kind"] == "RUN_COMPLETED")
        assert completed < retry_fired, f"{c.run_id} finished after the slow run's 5 s backoff ended"


def test_redrive_completes_the_run_and_a_second_redrive_changes_nothing(
    settings: Settings, start_worker: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixed = tmp_path / "notification-service-fixed"
    monkeypatch.setenv("TEST_FIXED_FILE", str(fixed))
    [order] = sample_orders(1, prefix="R")
    worker = start_worker("SAGA")
    produce_orders(settings, [order])
    [first] = decided(settings, {order.run_id}, worker)
    assert first["outcome"] == "COMPENSATED"
    letter_id = f"{order.run_id}/notify/run/3"

    fixed.touch()  # the fix is deployed
    redriven = cli(settings, "dlq", "redrive", letter_id)
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    assert "redriven" in redriven.stdout
    wait_for(lambda: len([d for d in outcomes(settings) if d["run_id"] == order.run_id]) == 2, 60, "a new decision")
    second = next(d for d in outcomes(settings) if d["run_id"] == order.run_id and d["outcome_id"] != first["outcome_id"])
    assert second["status"] == "DONE"
    events = by_run(settings)[order.run_id]
    after = [(e["kind"], e["step"], e["attempt"]) for e in events[[e["kind"] for e in events].index("RUN_REDRIVEN") :]]
    # Undone steps run again, notify gets a fresh budget (attempt 4), the run completes.
    assert ("STEP_SCHEDULED", "reserve", 2) in after and ("STEP_SCHEDULED", "charge", 2) in after
    assert ("STEP_SUCCEEDED", "notify", 4) in after and after[-1][0] == "RUN_COMPLETED"
    assert_exactly_once(settings, {order.run_id}, OUTPUT_TOPIC)
    journal_before = len(journal(settings))

    again = cli(settings, "dlq", "redrive", letter_id)
    assert again.returncode == 0 and "already redriven" in again.stdout, again.stdout + again.stderr
    # Even a repeated request that reaches the orchestrator (two operators at once) changes nothing.
    entry = dlq.find(settings, letter_id)
    assert entry is not None and entry.status == "redriven"
    dlq.request_redrives(settings, [dlq.control_for(entry.letter, "second-operator")])
    control = Topics(settings.namespace).control
    p = partition_for(order.run_id, settings.partitions)
    wait_for(lambda: _consumed_all(settings, control, p), 30, "the orchestrator to consume the repeated redrive")
    assert len(journal(settings)) == journal_before
    assert len([d for d in outcomes(settings) if d["run_id"] == order.run_id]) == 2


def _consumed_all(settings: Settings, topic: str, partition: int) -> bool:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": Topics(settings.namespace).orchestrator_group, "log_level": 3})
    try:
        [committed] = c.committed([TopicPartition(topic, partition)], timeout=10)
        return committed.offset >= len([r for r in read_topic(settings, topic) if r["_partition"] == partition])
    finally:
        c.close()
