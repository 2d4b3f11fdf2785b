"""FNOL claims through a real broker: decisions, journal, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from streams.config import Settings
from streams.topics import Topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, read_topic, wait_for
from tests.helpers import assert_exactly_once, decisions, journal, produce, sample_claims


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURABLE_NAMESPACE": settings.namespace,
    }


def _cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        env=_env(settings),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_every_sample_claim_gets_one_decision(settings: Settings) -> None:
    claims = sample_claims()
    assert len(claims) >= 50
    worker = Worker(settings, load_workflows(["processors.fnol.workflow:FNOL"])).start()
    try:
        produce(settings, claims)
        wait_for(
            lambda: len({d["run_id"] for d in decisions(settings)}) >= len(claims) or worker.failed, 60, "all decisions"
        )
        assert worker.failed is None
        assert_exactly_once(settings, {c.run_id for c in claims})
        for d in decisions(settings):
            assert d["status"] in ("ROUTED", "REVIEW", "ON_HOLD")
            assert d["queue"] and d["severity"] in ("LOW", "MEDIUM", "HIGH")
            assert d["reserve"] >= 0 and d["currency"] == "GBP" and d["reasons"]
            # Documents are requested, except where that failed and the run paused (the claim on hold).
            assert d["documents_requested"] or d["status"] == "ON_HOLD"
        statuses = {d["status"] for d in decisions(settings)}
        assert statuses == {"ROUTED", "REVIEW", "ON_HOLD"}, "the samples should exercise every outcome"
        # The two claims with no contact details: documents cannot be requested, so the run pauses with its
        # reserve held (nothing compensated) until an operator redrives or compensates it.
        held = {d["claim_id"]: d for d in decisions(settings) if d["status"] == "ON_HOLD"}
        assert set(held) == {"CLM-100005", "CLM-100043"}
        for d in held.values():
            assert d["reserve"] > 0 and "ClaimantUnreachable" in d["reasons"][0] and "held" in d["reasons"][1]
            kinds = [e["kind"] for e in journal(settings) if e["run_id"] == d["run_id"]]
            assert "RUN_PAUSED" in kinds and "RUN_COMPENSATING" not in kinds, kinds
            assert "state: PAUSED" in _cli(settings, "status", d["run_id"]).stdout

        # The CLI reads the same topics: decisions as JSON lines, a run's timeline.
        printed = _cli(settings, "consume", "decisions", "--from-beginning", "--timeout", "3")
        assert printed.returncode == 0, printed.stderr
        lines = [json.loads(line) for line in printed.stdout.splitlines()]
        assert {d["run_id"] for d in lines} == {c.run_id for c in claims} and len(lines) == len(claims)
        shown = _cli(settings, "status", claims[0].run_id)
        assert shown.returncode == 0, shown.stderr
        for word in ("RUN_STARTED", "STEP_SCHEDULED", "policy_check", "RUN_COMPLETED", "state: COMPLETED"):
            assert word in shown.stdout
        assert _cli(settings, "status", "fnol:acme:NOPE").returncode == 1
    finally:
        worker.stop()
        worker.join(20)


def test_no_raw_personal_data_reaches_any_topic(settings: Settings) -> None:
    claims = sample_claims(8)
    raw = [json.loads(line) for line in (ROOT / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()[:8]]
    worker = Worker(settings, load_workflows(["processors.fnol.workflow:FNOL"])).start()
    try:
        produce(settings, claims)
        wait_for(lambda: len(decisions(settings)) >= 8, 60, "decisions")
    finally:
        worker.stop()
        worker.join(20)
    topics = Topics(settings.namespace)
    dump = json.dumps(
        [
            read_topic(settings, t)
            for t in (
                topics.name("fnol.reported"),
                topics.commands,
                topics.results,
                topics.journal,
                topics.name("decisions"),
                topics.run_changelog,
            )
        ]
    ).lower()
    for r in raw:
        secrets = [r["claimant"]["name"], *(r["claimant"].get(k) for k in ("email", "phone") if r["claimant"].get(k))]
        if r.get("vehicle"):
            secrets.append(r["vehicle"]["plate"])
        for s in secrets:
            assert s.lower() not in dump, f"raw personal data on Kafka: {s!r}"


def test_produce_reports_bad_lines_and_produces_only_good_ones(settings: Settings) -> None:
    done = _cli(settings, "produce", "fnol", str(ROOT / "processors/fnol/samples/fnol_malformed.jsonl"))
    assert done.returncode == 1
    for n in range(2, 10):
        assert f"line {n}:" in done.stderr, done.stderr
    assert "line 1:" not in done.stderr
    assert "loss_type" in done.stderr and "not JSON" in done.stderr
    records = read_topic(settings, Topics(settings.namespace).name("fnol.reported"))
    assert len(records) == 1, "exactly the one good line is produced"

    ok = _cli(
        settings, "produce", "fnol", "-", stdin=(ROOT / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()[0]
    )
    assert ok.returncode == 0, ok.stderr
