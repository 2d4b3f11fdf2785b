"""Rollback: an operator undoes a COMPLETED FNOL run; its reserve is released and a signed RETRACTED decision follows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from streams.config import Settings
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import wait_for
from tests.helpers import assert_exactly_once, decisions, journal, produce, sample_claims
from tests.integration.test_audit import FNOL, _cli

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(settings: Settings) -> Iterator[Worker]:
    w = Worker(settings, load_workflows([FNOL])).start()
    try:
        yield w
    finally:
        w.stop()
        w.join(20)


def _latest(settings: Settings, run_id: str) -> dict[str, object]:
    return max(
        (d for d in decisions(settings) if d["run_id"] == run_id), key=lambda d: (d["decided_at_ms"], d["decision_id"])
    )


def test_rollback_releases_the_reserve_retracts_the_decision_once_and_still_verifies(
    settings: Settings, worker: Worker
) -> None:
    claims = sample_claims(3, prefix="RB")
    produce(settings, claims)
    runs = {c.run_id for c in claims}
    wait_for(lambda: {d["run_id"] for d in decisions(settings)} >= runs or worker.failed, 120, "three decisions")
    assert worker.failed is None
    held = [d for d in decisions(settings) if d["reserve"] > 0 and d["status"] != "REVIEW"]
    assert held, f"a sample claim completes with a reserve held: {decisions(settings)}"
    target = str(held[0]["run_id"])
    amount, currency = float(held[0]["reserve"]), held[0]["currency"]

    done = _cli(settings, "runs", "rollback", target, "--reason", "claim withdrawn by the policyholder")
    assert done.returncode == 0 and "rolling back" in done.stdout, done.stdout + done.stderr
    wait_for(lambda: _latest(settings, target)["status"] == "RETRACTED" or None, 60, "the retracting decision")
    retracted = _latest(settings, target)
    reasons = list(retracted["reasons"])  # type: ignore[call-overload]
    assert "claim withdrawn by the policyholder" in reasons[0], reasons
    assert f"reserve of {amount:,.0f} {currency} released" in reasons, reasons
    assert retracted["reserve"] == 0.0 and retracted["signature"], retracted

    events = sorted((e for e in journal(settings) if e["run_id"] == target), key=lambda e: e["seq"])
    kinds = [e["kind"] for e in events]
    assert kinds.index("RUN_COMPLETED") < kinds.index("RUN_COMPENSATING") and kinds[-1] == "RUN_COMPENSATED", kinds
    assert ("COMPENSATION_SUCCEEDED", "severity_reserve") in [(e["kind"], e["step"]) for e in events]
    [began] = [e for e in events if e["kind"] == "RUN_COMPENSATING"]
    detail = json.loads(began["detail_json"])
    assert detail["rollback"] is True and detail["requested_by"] and detail["reason"].startswith("claim withdrawn")

    verified = _cli(settings, "audit", "verify", target)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    before = len(journal(settings)), len(decisions(settings))
    again = _cli(settings, "runs", "rollback", target, "--reason", "clicked twice")
    assert again.returncode == 0 and "already" in again.stdout, again.stdout + again.stderr
    assert (len(journal(settings)), len(decisions(settings))) == before, "twice is once"
    assert_exactly_once(settings, runs)

    missing = _cli(settings, "runs", "rollback", "fnol:nope:nope", "--reason", "no such run")
    assert missing.returncode == 2 and "no run" in missing.stderr, missing.stdout + missing.stderr
