"""Records anyone can write onto our topics: none may stop a partition, split a run or vanish silently.

Everything here is written straight to the topics with a plain producer, as a
careless upstream or a hostile client would, against a worker process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from processors.fnol import FNOL
from schemas import encode, to_bytes
from schemas.models import StepResult
from streams import offsets
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics
from tests.conftest import ROOT, WorkerProcesses, read_topic, wait_for
from tests.helpers import (
    assert_exactly_once,
    decisions,
    journal,
    outcomes,
    produce,
    produce_orders,
    sample_claims,
    sample_orders,
)

BOTH = ("--workflow", "processors.fnol:FNOL", "--workflow", "tests.workflows:SLOW")
INPUT = "fnol.reported"


def _raw(settings: Settings) -> Producer:
    return Producer({"bootstrap.servers": settings.bootstrap_servers, "log_level": 3, "message.max.bytes": 2_000_000})


def _cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def _command_of(settings: Settings, run_id: str, step: str) -> dict[str, Any] | None:
    found = [
        c
        for c in read_topic(settings, Topics(settings.namespace).commands)
        if c["run_id"] == run_id and c["step"] == step
    ]
    return found[0] if found else None


def _forged(command: dict[str, Any], output_json: str) -> bytes:
    return to_bytes(
        StepResult(
            command_id=command["command_id"],
            run_id=command["run_id"],
            workflow=command["workflow"],
            step=command["step"],
            attempt=command["attempt"],
            output_json=output_json,
            started_at_ms=1,
            finished_at_ms=2,
            worker="forger",
        )
    )


def test_poison_records_are_dead_lettered_their_runs_fail_visibly_and_the_rest_is_decided(
    settings: Settings, workers: WorkerProcesses
) -> None:
    topics = Topics(settings.namespace)
    env = {"TEST_STEP_DELAY_S": "3"}
    a = workers.start("a", *BOTH, env=env)
    produce(settings, sample_claims(1, prefix="UP"))  # creates the topics and proves the worker is up
    wait_for(lambda: decisions(settings), 90, "a first decision")

    # Two orders whose first step is in flight for 3 s: answer each first, with a result no run can take.
    garbled, huge = sample_orders(2, prefix="POISON")
    produce_orders(settings, [garbled, huge])
    cmd_garbled = wait_for(lambda: _command_of(settings, garbled.run_id, "a"), 30, "the first command")
    cmd_huge = wait_for(lambda: _command_of(settings, huge.run_id, "a"), 30, "the second command")
    raw = _raw(settings)
    raw.produce(
        topics.results,
        key=garbled.run_id,
        value=_forged(cmd_garbled, "this is not json"),
        partition=cmd_garbled["_partition"],
    )
    big_output = json.dumps({"blob": "x" * 980_000})  # the broker takes it; a run state holding it is over the limit
    raw.produce(topics.results, key=huge.run_id, value=_forged(cmd_huge, big_output), partition=cmd_huge["_partition"])

    # Inputs that break the FNOL contract, each on its run's own partition.
    good = sample_claims(1, prefix="BAD")[0].record
    bad_inputs = {
        "raw email in a token field": {
            **good,
            "claim_id": "BAD-1",
            "claimant": {**good["claimant"], "email_token": "bilal@example.com"},
        },
        "markup in the tenant id": {**good, "claim_id": "BAD-2", "tenant_id": "x[/bold]"},
        "a '/' in the claim id": {**good, "claim_id": "BAD/3"},
        "a claim of about 1 MB": {**good, "claim_id": "BAD-4", "description": "d" * 1_000_000},
    }
    for record in bad_inputs.values():
        run_id = f"fnol:{record['tenant_id']}:{record['claim_id']}"
        raw.produce(
            topics.name(INPUT),
            key=run_id,
            value=encode(FNOL.input_schema, record),
            partition=partition_for(run_id, settings.partitions),
        )
    raw.produce(topics.name(INPUT), key=b"k", value=b"\xc3\x01 not avro", partition=0)
    assert raw.flush(30) == 0

    later = sample_claims(6, prefix="AFTER")
    produce(settings, later)
    wait_for(
        lambda: {d["run_id"] for d in decisions(settings)} >= {c.run_id for c in later}, 90, "the later claims decided"
    )

    def both_ended() -> dict[str, dict[str, Any]] | None:
        found = {x["run_id"]: x for x in outcomes(settings)}
        return found if len(found) == 2 else None

    ended = wait_for(both_ended, 60, "both orders ended")
    assert a.poll() is None, workers.log("a")

    assert ended[garbled.run_id]["status"] == "FAILED"
    assert "MalformedResult: step output is not JSON" in ended[garbled.run_id]["reasons"][0]
    assert ended[huge.run_id]["status"] == "FAILED"
    assert "over the limit" in ended[huge.run_id]["reasons"][0]
    letters = read_topic(settings, topics.dead_letters)
    reasons = " | ".join(str(d["reason"]) for d in letters)
    for expected in (
        "step output is not JSON",
        "over the limit",
        "email_token",
        "tenant_id",
        "claim_id",
        "over the workflow's limit",
        "unknown schema fingerprint",
    ):
        assert expected in reasons, expected
    assert not any(d["run_id"] and d["run_id"].startswith("fnol:x[") for d in decisions(settings))

    # The operator's tools read them all (ids, errors, payloads with markup in them) without tripping.
    listed = _cli(settings, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" record ") >= 6

    # A restart reads nothing of them again: it decides new claims, and stays up.
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    b = workers.start("a", *BOTH)
    more = sample_claims(3, prefix="MORE")
    produce(settings, more)
    wait_for(
        lambda: {d["run_id"] for d in decisions(settings)} >= {c.run_id for c in more}, 90, "claims after the restart"
    )
    assert b.poll() is None, workers.log("a")
    assert len(read_topic(settings, topics.dead_letters)) == len(letters), "a restart must not meet the poison again"


def test_a_run_has_one_owner_whatever_partitioner_its_producer_used(
    settings: Settings, workers: WorkerProcesses
) -> None:
    topics = Topics(settings.namespace)
    workers.start("a", "--workflow", "processors.fnol:FNOL")
    claims = sample_claims(12, prefix="PART")
    # librdkafka's default partitioner (CRC32 of the key), as a producer that never read our README would use.
    crc = Producer({"bootstrap.servers": settings.bootstrap_servers, "log_level": 3})
    for c in claims[:8]:
        crc.produce(topics.name(INPUT), key=c.run_id, value=encode(FNOL.input_schema, c.record))
    # The same claim on two other partitions: one claim is one run.
    home = partition_for(claims[8].run_id, settings.partitions)
    for p in {(home + 1) % settings.partitions, (home + 2) % settings.partitions}:
        crc.produce(
            topics.name(INPUT), key=claims[8].run_id, value=encode(FNOL.input_schema, claims[8].record), partition=p
        )
    assert crc.flush(30) == 0
    produce(settings, claims[9:])
    run_ids = {c.run_id for c in claims}
    wait_for(lambda: {d["run_id"] for d in decisions(settings)} >= run_ids, 90, "every claim decided")
    assert_exactly_once(settings, run_ids)
    for event in journal(settings):
        assert event["_partition"] == partition_for(event["run_id"], settings.partitions), event
    shown = _cli(settings, "status", claims[0].run_id)
    assert shown.returncode == 0 and "state: COMPLETED" in shown.stdout


def test_duplicates_are_acknowledged_and_conflicts_recorded(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path
) -> None:
    topics = Topics(settings.namespace)
    workers.start("a", "--workflow", "processors.fnol:FNOL")
    lines = [json.loads(line) for line in (ROOT / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()[:3]]
    batch = tmp_path / "claims.jsonl"
    batch.write_text("\n".join(map(json.dumps, lines)) + "\n")
    first = _cli(settings, "produce", "fnol", str(batch))
    assert first.returncode == 0 and "produced 3 input(s)" in first.stderr, first.stderr
    run_ids = {f"fnol:{c['tenant_id']}:{c['claim_id']}" for c in lines}
    wait_for(lambda: {d["run_id"] for d in decisions(settings)} >= run_ids, 90, "three decisions")

    again = _cli(settings, "produce", "fnol", str(batch))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("duplicate of run fnol:") == 3 and "not produced again" in again.stderr
    changed = tmp_path / "changed.jsonl"
    changed.write_text(
        json.dumps({**lines[0], "estimated_amount": 99.0})
        + "\n"
        + json.dumps(lines[1])
        + "\n"
        + json.dumps({**lines[1], "description": "other words"})
        + "\n"
    )
    conflicting = _cli(settings, "produce", "fnol", str(changed))
    assert conflicting.returncode == 1
    assert "line 1: conflicts with run" in conflicting.stderr and "estimated_amount" in conflicting.stderr
    assert "line 3: conflicts with run" in conflicting.stderr

    # Straight to the topic, a conflicting claim is journaled and dead-lettered, once, and decides nothing new.
    claim = sample_claims(1)[0]
    other = {**claim.record, "estimated_amount": 1.0}
    raw = _raw(settings)
    for _ in range(2):
        raw.produce(
            topics.name(INPUT),
            key=claim.run_id,
            value=encode(FNOL.input_schema, other),
            partition=partition_for(claim.run_id, settings.partitions),
        )
    assert raw.flush(30) == 0

    def conflicts() -> list[dict[str, Any]] | None:
        found = [e for e in journal(settings) if e["kind"] == "INPUT_CONFLICT" and e["run_id"] == claim.run_id]
        return found or None

    wait_for(conflicts, 60, "the conflict journaled")
    p = partition_for(claim.run_id, settings.partitions)
    wait_for(lambda: _consumed_to_end(settings, topics.name(INPUT), p), 60, "both copies consumed")
    [event] = conflicts() or []
    letter_id = json.loads(event["detail_json"])["dead_letter_id"]
    letters = {d["dead_letter_id"]: d for d in read_topic(settings, topics.dead_letters)}
    assert letters[letter_id]["kind"] == "conflict" and "estimated_amount" in letters[letter_id]["reason"]
    assert Counter(d["run_id"] for d in decisions(settings))[claim.run_id] == 1


def _consumed_to_end(settings: Settings, topic: str, partition: int) -> bool:
    """Whether the orchestrators committed every record of ``topic``'s ``partition``."""
    committed = offsets.committed(settings, Topics(settings.namespace).orchestrator_group).get((topic, partition), 0)
    return committed >= len([r for r in read_topic(settings, topic) if r["_partition"] == partition])


def test_produce_reports_every_bad_line_as_text_and_never_aborts(settings: Settings, tmp_path: Path) -> None:
    good = json.loads((ROOT / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()[0])
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                "[" * 1000 + "]" * 1000,
                json.dumps({**good, "claim_id": "X-1", "loss_date": "[/x]"}),
                json.dumps({**good, "claim_id": "bad id!"}),
                json.dumps({**good, "claim_id": "X-4"}),
            ]
        )
        + "\n"
    )
    done = _cli(settings, "produce", "fnol", str(path))
    assert done.returncode == 1
    assert "line 1: JSON nested too deeply" in done.stderr
    assert "line 2: loss_date" in done.stderr
    assert "'^[A-Za-z0-9_-]{1,64}$'" in done.stderr, "bracketed text is printed as text, not eaten as markup"
    assert "produced 1 input(s)" in done.stderr
    assert len(read_topic(settings, Topics(settings.namespace).name(INPUT))) == 1


def test_a_burst_is_admitted_in_order_and_never_more_than_the_limit_runs_at_once(
    settings: Settings, workers: WorkerProcesses
) -> None:
    limit = 5
    workers.start(
        "a",
        "--workflow",
        "tests.workflows:SLOW",
        env={"TEST_STEP_DELAY_S": "0.2", "DURABLE_MAX_RUNS_IN_FLIGHT": str(limit)},
    )
    orders = sample_orders(40, prefix="BURST")
    produce_orders(settings, orders)  # all at once
    run_ids = {o.run_id for o in orders}
    wait_for(lambda: {x["run_id"] for x in outcomes(settings)} >= run_ids, 120, "every order decided")
    assert_exactly_once(settings, run_ids, "orders.outcomes")

    events = journal(settings)
    started = {e["run_id"]: e["at_ms"] for e in events if e["kind"] == "RUN_STARTED"}
    ended = {e["run_id"]: e["at_ms"] for e in events if e["kind"] in ("RUN_COMPLETED", "RUN_FAILED", "RUN_COMPENSATED")}
    # Live at once: a run counts from its admission up to (not including) the moment it ended.
    moments = sorted(started.values())
    most = max(sum(1 for r in run_ids if started[r] <= t < ended[r]) for t in moments)
    assert most <= limit, f"{most} runs in flight at once, limit {limit}"
    assert most == limit, "the burst should have filled the house"
    # In arrival order: within a partition, runs start in the order their inputs were written.
    by_partition: dict[int, list[tuple[int, str]]] = {}
    inputs = read_topic(settings, Topics(settings.namespace).name("orders.placed"))
    for record in inputs:
        run_id = f"order-{record['order_id']}"
        by_partition.setdefault(record["_partition"], []).append((record["_offset"], run_id))
    for arrivals in by_partition.values():
        order = [started[r] for _, r in sorted(arrivals)]
        assert order == sorted(order)

    # The wait shows on the trace, apart from the run's own latency.
    late = max(run_ids, key=lambda r: started[r])
    spans = read_topic(settings, Topics(settings.namespace).traces)
    queued = [s for s in spans if s["run_id"] == late and s["name"] == "orchestrator.queued"]
    assert len(queued) == 1 and json.loads(queued[0]["attributes_json"])["durable.queued_ms"] > 0
