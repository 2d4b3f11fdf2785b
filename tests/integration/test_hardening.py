"""Records anyone can write onto our topics: none may stop a partition, split a run or vanish silently.

Everything here is written straight to the topics with a plain producer, as a
careless upstream or a hostile client would, against a worker process.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from processors.engine.execute import run_step
from processors.fnol import FNOL
from processors.models import client_from_env
from schemas import encode, from_bytes, to_bytes
from schemas.models import StepCommand, StepResult
from streams import authentication, offsets
from streams import deadletters as dlq
from streams.config import Settings
from streams.kafka import partition_for
from streams.reading import read_all
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
    """A result for ``command`` that no executor wrote (see :func:`_signed` to give it a valid MAC)."""
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


def _signed(topic: str, record_id: str, value: bytes) -> list[tuple[str, str | bytes | None]]:
    """Headers with a valid MAC, as a process holding the worker secret (the tests' one) writes them."""
    return [authentication.header(topic, record_id, value)]


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
    # Both carry a valid MAC (a buggy worker, not a forger): they get past authentication and fail their attempt.
    raw = _raw(settings)
    garbled_value = _forged(cmd_garbled, "this is not json")
    raw.produce(
        topics.results,
        key=garbled.run_id,
        value=garbled_value,
        partition=cmd_garbled["_partition"],
        headers=_signed(topics.results, cmd_garbled["command_id"], garbled_value),
    )
    big_output = json.dumps({"blob": "x" * 980_000})  # the broker takes it; a run state holding it is over the limit
    huge_value = _forged(cmd_huge, big_output)
    raw.produce(
        topics.results,
        key=huge.run_id,
        value=huge_value,
        partition=cmd_huge["_partition"],
        headers=_signed(topics.results, cmd_huge["command_id"], huge_value),
    )

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


# ---------------------------------------------------------------- workers trust only workers (issue 17, item 2)

WRONG_SECRET = b"a-secret-the-forger-guessed-0123456789abcdef"


def _tampered(result: StepResult) -> StepResult:
    """What the forger answers: the real step's output, bent to route the claim fast_track with a 950,000 reserve."""
    output = json.loads(result.output_json or "{}")
    if result.step == "policy_check":
        output.update(found=True, in_force=True, covered=True)
    elif result.step == "fraud_check":
        output.update(refer_to_siu=False)
    elif result.step == "severity_reserve":
        output.update(severity="LOW", reserve=950_000)
    elif result.step == "evaluator":
        output["gates"] = [{**g, "passed": True} for g in output.get("gates", [])]
    return result.model_copy(update={"output_json": json.dumps(output), "error": None, "worker": "forger"})


class _Forger:
    """A client that reads ``<ns>.step.commands`` and answers every attempt of one run with a forged result.

    It runs the real step itself (so every output has the shape the next steps expect), bends it
    (:func:`_tampered`), and writes it with no MAC, or with one under a guessed secret, in turn.
    """

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.run_id = run_id
        self.answered: list[str] = []
        self._models = client_from_env(simulations=[FNOL.simulation])
        self._loop = asyncio.new_event_loop()
        self._raw = _raw(settings)

    def forge(self) -> None:
        for msg in read_all(self.settings, self.topics.commands):
            value = msg.value() or b""
            command = from_bytes(value, StepCommand)
            if command.run_id != self.run_id or command.command_id in self.answered:
                continue
            real = self._loop.run_until_complete(run_step({FNOL.name: FNOL}, command, "forger", models=self._models))
            forged = to_bytes(_tampered(real))
            headers = (
                [authentication.header(self.topics.results, command.command_id, forged, WRONG_SECRET)]
                if len(self.answered) % 2
                else []
            )
            self._raw.produce(
                self.topics.results, key=self.run_id, value=forged, partition=msg.partition() or 0, headers=headers
            )
            self.answered.append(command.command_id)
        assert self._raw.flush(30) == 0

    def close(self) -> None:
        self._loop.close()


def _decision_of(settings: Settings, run_id: str) -> dict[str, Any] | None:
    return next((d for d in decisions(settings) if d["run_id"] == run_id), None)


def _refused(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """The dead letters of records of ``topic`` refused for their MAC."""
    return [
        d
        for d in read_topic(settings, Topics(settings.namespace).dead_letters)
        if d["source_topic"] == topic and "unauthenticated" in d["reason"]
    ]


def test_a_forged_result_for_another_tenants_run_is_dead_lettered_and_the_decision_is_the_real_one(
    settings: Settings, workers: WorkerProcesses
) -> None:
    topics = Topics(settings.namespace)
    fnol = ("--workflow", "processors.fnol:FNOL")
    # No executor yet: whatever answers the run's first attempt is the forger, first.
    workers.start("orchestrator", "--role", "orchestrator", *fnol)
    claim = next(c for c in sample_claims(30, prefix="GLX") if c.record["tenant_id"] == "globex")
    produce(settings, [claim])
    forger = _Forger(settings, claim.run_id)
    try:

        def forged_answer_taken_or_refused() -> bool:
            forger.forge()
            return bool(_decision_of(settings, claim.run_id) or _refused(settings, topics.results))

        wait_for(forged_answer_taken_or_refused, 60, "the forged answer taken or refused")
        workers.start("executor", "--role", "executor", *fnol)

        def decided() -> dict[str, Any] | None:
            forger.forge()  # it goes on answering every new attempt, racing the executor
            return _decision_of(settings, claim.run_id)

        decision = wait_for(decided, 120, "the claim decided")
    finally:
        forger.close()

    assert forger.answered and forger.answered[0] == f"{claim.run_id}/plan/1", forger.answered
    shown = f"{decision['status']} {decision['queue']} reserve {decision['reserve']:,.0f} {decision['currency']}"
    assert (decision["queue"], decision["reserve"]) != ("fast_track", 950_000.0), f"the forgery decided: {shown}"
    # The decision is the real one: the reserve the executor's severity step set, not the forger's.
    genuine = [
        r
        for r in read_topic(settings, topics.results)
        if r["run_id"] == claim.run_id and r["step"] == "severity_reserve" and r["worker"] != "forger"
    ]
    assert genuine, "the executor answered the severity step"
    assert decision["reserve"] == float(json.loads(genuine[-1]["output_json"])["reserve"])
    assert Counter(d["run_id"] for d in decisions(settings))[claim.run_id] == 1
    # Every forged record was dead-lettered, with the reason.
    refused = wait_for(
        lambda: (found := _refused(settings, topics.results)) and len(found) >= len(forger.answered) and found,
        60,
        "every forged result dead-lettered",
    )
    assert len(refused) == len(forger.answered)
    assert any("no durable-mac header" in d["reason"] for d in refused)
    assert any("does not verify" in d["reason"] for d in refused)


def test_a_forged_redrive_is_dead_lettered_and_a_signed_one_records_who_asked(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path
) -> None:
    topics = Topics(settings.namespace)
    fixed = tmp_path / "notification-service-fixed"
    workers.start("a", "--workflow", "tests.workflows:SAGA", env={"TEST_FIXED_FILE": str(fixed)})
    [order] = sample_orders(1, prefix="RD")
    produce_orders(settings, [order])
    wait_for(lambda: [x for x in outcomes(settings) if x["run_id"] == order.run_id], 90, "the order compensated")
    letter_id = f"{order.run_id}/notify/run/3"
    entry = wait_for(lambda: dlq.find(settings, letter_id), 30, "its dead letter")
    fixed.touch()  # a redrive would now complete the run: only an authenticated one may

    # Forged: no MAC; a MAC under a guessed secret; a valid MAC moved from another record.
    control = dlq.control_for(entry.letter, "root")  # requested_by: whatever the forger likes
    value = to_bytes(control)
    other = to_bytes(control.model_copy(update={"control_id": "redrive:another"}))
    p = partition_for(order.run_id, settings.partitions)
    raw = _raw(settings)
    for headers in (
        [],
        [authentication.header(topics.control, control.control_id, value, WRONG_SECRET)],
        _signed(topics.control, "redrive:another", other),
    ):
        raw.produce(topics.control, key=order.run_id, value=value, partition=p, headers=headers)
    assert raw.flush(30) == 0
    wait_for(lambda: _consumed_to_end(settings, topics.control, p), 60, "the forged redrives consumed")
    assert len(_refused(settings, topics.control)) == 3
    assert not [e for e in journal(settings) if e["run_id"] == order.run_id and e["kind"] == "RUN_REDRIVEN"]
    assert len([x for x in outcomes(settings) if x["run_id"] == order.run_id]) == 1
    still = dlq.find(settings, letter_id)
    assert still is not None and still.status == "open", "a forged redrive is no redrive in `dlq list` either"

    # `durable dlq redrive`, holding the worker secret: applied, recording the OS user who asked.
    redriven = _cli(settings, "dlq", "redrive", letter_id)
    assert redriven.returncode == 0 and "redriven" in redriven.stdout, redriven.stdout + redriven.stderr
    [event] = [e for e in journal(settings) if e["run_id"] == order.run_id and e["kind"] == "RUN_REDRIVEN"]
    assert json.loads(event["detail_json"])["requested_by"] == getpass.getuser()
    wait_for(
        lambda: len([x for x in outcomes(settings) if x["run_id"] == order.run_id]) == 2, 60, "the redriven run decided"
    )


def test_a_forged_command_is_dead_lettered_and_runs_no_step(settings: Settings, workers: WorkerProcesses) -> None:
    topics = Topics(settings.namespace)
    workers.start("a", "--workflow", "processors.fnol:FNOL")
    [claim] = sample_claims(1, prefix="CMD")
    produce(settings, [claim])
    wait_for(lambda: _decision_of(settings, claim.run_id), 90, "the claim decided")
    genuine = next(
        m
        for m in read_all(settings, topics.commands)
        if from_bytes(m.value() or b"", StepCommand).command_id == f"{claim.run_id}/severity_reserve/1"
    )
    command = from_bytes(genuine.value() or b"", StepCommand)
    # Its inputs bent (a policy in force, no fraud), under a new attempt the executor would run and sign.
    forged = command.model_copy(update={"command_id": f"{claim.run_id}/severity_reserve/9", "attempt": 9})
    value = to_bytes(forged)
    moved = [(k, v) for k, v in genuine.headers() or [] if k == authentication.HEADER]
    assert moved, "the orchestrator signs its commands"
    raw = _raw(settings)
    for headers in ([], moved):
        raw.produce(topics.commands, key=claim.run_id, value=value, partition=genuine.partition() or 0, headers=headers)
    assert raw.flush(30) == 0
    refused = wait_for(
        lambda: (found := _refused(settings, topics.commands)) and len(found) >= 2 and found,
        60,
        "both forged commands dead-lettered",
    )
    assert len(refused) == 2
    assert not [r for r in read_topic(settings, topics.results) if r["command_id"] == forged.command_id]
