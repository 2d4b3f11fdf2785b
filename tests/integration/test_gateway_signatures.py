"""The gateway serves a decision only once its signature verifies; a forged one is withheld and dead-lettered once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import DecodeError, from_bytes, to_bytes
from schemas.codec import decode
from schemas.models import DeadLetter, JournalEvent, JournalKind
from streams import audit, signed_outputs, signing
from streams.audit import Written
from streams.config import Settings
from streams.kafka import producer
from streams.reading import read_all
from streams.topics import Topics
from tests.conftest import TEST_SIGNER, WorkerProcesses, wait_for
from tests.gateway_helpers import LiveGateway, sample

pytestmark = pytest.mark.integration
DECISION = "durable.fnol.RoutedDecision"


def _decided(c: httpx.Client, n: int) -> dict[str, Any]:
    """Submit sample ``n`` and wait for its run to end; its run detail."""
    r = c.post("/api/v1/agent/run", json=sample(n))
    assert r.status_code in (200, 202), r.text
    run_id = r.json()["run_id"]

    def ended() -> dict[str, Any] | None:
        got = c.get(f"/api/v1/runs/{run_id}")
        return got.json() if got.status_code == 200 and got.json()["status"] in ("COMPLETED", "FAILED") else None

    detail: dict[str, Any] = wait_for(ended, 90, f"run {run_id} to end")
    return detail


def _decision(settings: Settings, run_id: str) -> Written:
    [rec] = audit.read(settings, [Topics(settings.namespace).name("decisions")], {run_id}).outputs[run_id]
    return rec


def _append(settings: Settings, rec: Written, value: bytes) -> None:
    """Write a record straight onto ``rec``'s topic and partition (what write access allows)."""
    p = producer(settings)
    p.produce(rec.topic, value, rec.key.encode(), partition=rec.partition)
    assert p.flush(30) == 0


def _letters(settings: Settings, run_id: str) -> list[DeadLetter]:
    """Every dead-letter record of the run as written (not deduplicated by id)."""
    found = []
    for msg in read_all(settings, Topics(settings.namespace).dead_letters):
        try:
            letter = from_bytes(msg.value() or b"", DeadLetter)
        except DecodeError:
            continue
        if letter.run_id == run_id:
            found.append(letter)
    return found


def _invalid(c: httpx.Client, run_id: str) -> dict[str, Any] | None:
    got = c.get(f"/api/v1/runs/{run_id}").json()
    return got if got["signature"]["status"] == "invalid" else None


def test_decisions_are_verified_and_forged_ones_withheld(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    with LiveGateway(settings) as gw, gw.client(gw.key("acme")) as c:
        good, resigned, garbled, rewritten = (_decided(c, n) for n in (1, 2, 3, 0))
        for run in (good, resigned, garbled, rewritten):
            assert run["output"] is not None
            assert run["signature"] == {"status": "verified", "key_id": TEST_SIGNER.key_id, "reason": None}
        waited = c.post("/api/v1/agent/run", json=sample(2), headers={"Prefer": "wait=10"}).json()
        assert waited["duplicate"] and waited["output"] and waited["signature"]["status"] == "verified"
        trace = c.get(f"/api/v1/runs/{good['run_id']}/trace").json()
        assert trace["output"] and trace["summary"] and trace["signature"]["status"] == "verified"

        # One decision re-signed by a key the gateway does not know, one whose signature was altered.
        rec = _decision(settings, resigned["run_id"])
        _, record = decode(rec.value)
        stranger = signing.generate(tmp_path / "stranger.key")
        _append(settings, rec, signed_outputs.sign(DECISION, record, record["journal_head"], stranger))
        rec = _decision(settings, garbled["run_id"])
        flipped = "0" if rec.value[-1:] != b"0" else "1"
        _append(settings, rec, rec.value[:-1] + flipped.encode())

        # And a run's ending journaled again with a larger reserve: the journal's view would serve it.
        journal = audit.read(settings, [], {rewritten["run_id"]}).journal[rewritten["run_id"]]
        ending = next(r for r in journal if from_bytes(r.value, JournalEvent).kind is JournalKind.RUN_COMPLETED)
        event = from_bytes(ending.value, JournalEvent)
        detail = json.loads(event.detail_json or "{}")
        detail["reserve"] = float(detail.get("reserve") or 0) + 10_000
        _append(settings, ending, to_bytes(event.model_copy(update={"detail_json": json.dumps(detail)})))
        shown = wait_for(lambda: _invalid(c, rewritten["run_id"]), 30, "the rewritten run read as invalid")
        assert shown["output"] is None and "written twice with different contents" in shown["signature"]["reason"]
        [letter] = _letters(settings, rewritten["run_id"])
        assert letter.error_type == "BrokenChain" and letter.source_topic == Topics(settings.namespace).journal

        for run, why in ((resigned, "unknown key id"), (garbled, "bad signature")):
            run_id = run["run_id"]
            shown = wait_for(lambda r=run_id: _invalid(c, r), 30, f"run {run_id} read as invalid")
            assert shown["status"] == "COMPLETED" and shown["output"] is None, "a forged decision is not served"
            assert why in shown["signature"]["reason"] and "decisions" in shown["signature"]["reason"]
            again = c.get(f"/api/v1/runs/{run_id}/trace")
            assert again.status_code == 200 and again.json()["output"] is None and again.json()["summary"] is None
            assert again.json()["signature"]["status"] == "invalid"
            dup = c.post("/api/v1/agent/run", json=sample(2 if run is resigned else 3)).json()
            assert dup["output"] is None and dup["signature"]["status"] == "invalid"
            [letter] = _letters(settings, run_id)  # read four times, written once
            assert letter.kind == "record" and letter.error_type == "InvalidSignature" and why in letter.reason
            assert letter.source_topic.endswith("decisions")
        listed = {r["run_id"]: r for r in c.get("/api/v1/runs").json()["runs"]}
        assert listed[good["run_id"]]["signature"]["status"] == "verified" and listed[good["run_id"]]["output"]
        assert listed[resigned["run_id"]]["output"] is None
        assert listed[resigned["run_id"]]["signature"]["status"] == "invalid"
        # The untouched run is still served; the tenant sees its letters; each bad record counted once.
        assert c.get(f"/api/v1/runs/{good['run_id']}").json()["signature"]["status"] == "verified"
        ids = {d["run_id"] for d in c.get("/api/v1/deadletters").json()["dead_letters"]}
        assert {resigned["run_id"], garbled["run_id"]} <= ids
        counted = re.search(r'^durable_gateway_decisions_invalid_total\{.*workflow="fnol".*\} (\S+)$',
                            c.get("/metrics").text, re.M)
        assert counted is not None and float(counted.group(1)) == 3
    # A restarted gateway reads the forged decision again and writes no second letter.
    with LiveGateway(settings) as gw, gw.client(gw.key("acme")) as c:
        assert _invalid(c, resigned["run_id"]) is not None
        assert len(_letters(settings, resigned["run_id"])) == 1


def test_signing_off_serves_decisions_marked_unsigned(
    settings: Settings, workers: WorkerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.SIGNING_ENV, "off")  # the worker (started after this) and the gateway
    workers.start("w1")
    with LiveGateway(settings) as gw, gw.client(gw.key("acme")) as c:
        run = _decided(c, 1)
        assert run["output"] is not None and run["signature"]["status"] == "unsigned"
        assert "DURABLE_SIGNING=off" in run["signature"]["reason"]
        _, record = decode(_decision(settings, run["run_id"]).value)
        assert record["signature"] is None, "the worker wrote its decision unsigned"
