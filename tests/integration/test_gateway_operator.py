"""An operator's word over HTTP: compensate a paused run, roll back a completed one; operators only, each once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.gateway.keys import Role
from streams.config import Settings
from tests.conftest import WorkerProcesses, wait_for
from tests.gateway_helpers import LiveGateway, sample
from tests.helpers import assert_exactly_once, decisions, journal

pytestmark = pytest.mark.integration
PHONE = "+44 20 7946 0958"


def _run(c: httpx.Client, run_id: str) -> dict[str, Any]:
    r = c.get(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _latest(settings: Settings, run_id: str) -> dict[str, Any] | None:
    mine = [d for d in decisions(settings) if d["run_id"] == run_id]
    return mine[-1] if mine else None


def test_operators_compensate_a_paused_run_and_roll_back_a_completed_one(
    settings: Settings, workers: WorkerProcesses
) -> None:
    workers.start("w1")
    with LiveGateway(settings) as gw:
        operator, viewer, other = gw.key("acme"), gw.key("acme", Role.VIEWER), gw.key("globex")
        with gw.client(operator) as a, gw.client(viewer) as v, gw.client(other) as g:
            # CLM-100005's claimant left no email or phone: the run pauses, the claim ON_HOLD with its reserve.
            held = a.post("/api/v1/agent/run", json=sample(4)).json()["run_id"]
            done = a.post("/api/v1/agent/run", json=sample(1)).json()["run_id"]
            wait_for(lambda: _run(a, held)["status"] == "PAUSED", 60, "the held run to pause")
            wait_for(lambda: _run(a, done)["status"] == "COMPLETED", 60, "the other run to complete")
            reserve = _run(a, held)["output"]["reserve"]
            assert reserve > 0

            url = f"/api/v1/runs/{held}/compensate"
            why = {"reason": f"claimant withdrew the claim by phone from {PHONE}"}
            # Who may ask, and what is asked: checked before anything is written.
            assert v.post(url, json=why).status_code == 403, "viewers do not undo runs"
            assert g.post(url, json=why).status_code == 404, "another tenant's run does not exist"
            assert a.post("/api/v1/runs/fnol:acme:NOPE/compensate", json=why).status_code == 404
            for body, status in (
                ({}, 422),
                ({"reason": ""}, 422),
                ({"reason": "x" * 501}, 422),
                ({"reason": "ok", "force": True}, 422),
                ({"reason": 7}, 422),
            ):
                r = a.post(url, json=body)
                assert r.status_code == status and r.json()["title"], (body, r.text)
            assert a.post(url, content=b"reason=x", headers={"Content-Type": "text/plain"}).status_code == 415
            refused = a.post(f"/api/v1/runs/{held}/rollback", json=why)
            assert refused.status_code == 409 and "only a COMPLETED run" in refused.json()["detail"], refused.text
            refused = a.post(f"/api/v1/runs/{done}/compensate", json=why)
            assert refused.status_code == 409 and "only a PAUSED run" in refused.json()["detail"], refused.text
            assert [e for e in journal(settings) if e["kind"] == "RUN_COMPENSATING"] == [], "nothing was sent"

            # Compensate the paused run: the reserve is released, a new decision says so; the reason is kept,
            # without the phone number.
            asked = a.post(url, json=why)
            assert asked.status_code == 202 and asked.json()["status"] == "requested", asked.text
            assert asked.headers["location"] == f"/api/v1/runs/{held}"
            wait_for(lambda: _run(a, held)["status"] == "COMPENSATED", 60, "the held run compensated")
            undone = wait_for(
                lambda: d if (d := _latest(settings, held)) and d["status"] == "REVIEW" else None, 30, "its new decision"
            )
            assert undone["reserve"] == 0.0 and any("released" in r for r in undone["reasons"]), undone
            [began] = [e for e in journal(settings) if e["run_id"] == held and e["kind"] == "RUN_COMPENSATING"]
            assert f"apikey:{operator_id(a)}" in began["detail_json"] and "claimant withdrew" in began["detail_json"]
            assert PHONE not in began["detail_json"] and "7946" not in began["detail_json"]
            again = a.post(url, json=why)
            assert again.status_code == 200 and again.json()["status"].startswith("already"), again.text

            # Roll back the completed run: its decision retracted, once.
            back = a.post(f"/api/v1/runs/{done}/rollback", json={"reason": "duplicate of an earlier claim"})
            assert back.status_code == 202, back.text
            retracted = wait_for(
                lambda: d if (d := _latest(settings, done)) and d["status"] == "RETRACTED" else None,
                60,
                "the retracting decision",
            )
            assert "duplicate of an earlier claim" in retracted["reasons"][0]
            wait_for(lambda: _run(a, done)["status"] == "COMPENSATED", 30, "the rolled-back run to end")
            assert a.post(f"/api/v1/runs/{done}/rollback", json={"reason": "again"}).status_code == 200
    assert_exactly_once(settings, {held, done})


def operator_id(c: httpx.Client) -> str:
    """The key id of the client's API key, as the gateway records it (`apikey:<id>`)."""
    who = c.get("/api/v1/whoami")
    assert who.status_code == 200, who.text
    return str(who.json()["key_id"])
