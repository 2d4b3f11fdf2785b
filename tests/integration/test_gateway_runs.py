"""The gateway with a real worker deciding runs: Prefer: wait, resubmission, isolation, SSE, trace, replay, redrive."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.gateway.keys import Role
from streams.config import Settings
from tests.conftest import WorkerProcesses, wait_for
from tests.gateway_helpers import LiveGateway, sample

pytestmark = pytest.mark.integration
ENDED = ("COMPLETED", "FAILED", "COMPENSATED", "PAUSED")  # or at rest: a paused run waits for an operator


def _ended(c: httpx.Client, run_id: str) -> dict[str, object] | None:
    r = c.get(f"/api/v1/runs/{run_id}")
    return r.json() if r.status_code == 200 and r.json()["status"] in ENDED else None


def _sse(c: httpx.Client, run_id: str) -> list[tuple[str, int, dict[str, object]]]:
    """Every event of the run's stream as (event, id, data), until the server ends it."""
    events: list[tuple[str, int, dict[str, object]]] = []
    with c.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    events.append((fields["event"], int(fields["id"]), json.loads(fields["data"])))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def test_runs_through_http_decided_by_a_worker(settings: Settings, workers: WorkerProcesses) -> None:
    workers.start("w1")
    with LiveGateway(settings) as gw:
        acme, globex = gw.key("acme", Role.OPERATOR), gw.key("globex", Role.OPERATOR)
        acme_viewer = gw.key("acme", Role.VIEWER)
        with gw.client(acme) as a, gw.client(globex) as g, gw.client(acme_viewer) as v:
            # The first run waits for the worker to join: accepted now, followed by its status URL.
            first = a.post("/api/v1/agent/run", json=sample(1))
            assert first.status_code == 202, first.text
            run_id = first.json()["run_id"]
            # Live events: subscribed while the run may still be in flight, delivered in seq order to its end.
            events = _sse(a, run_id)
            seqs = [i for _, i, _ in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"events in order, each once: {seqs}"
            assert events[0][0] == "RUN_STARTED" and events[-1][0] in ("RUN_COMPLETED", "RUN_COMPENSATED")
            done = wait_for(lambda: _ended(a, run_id), 60, "the first run to end")
            # Prefer: wait answers with the decision once the worker is warm.
            waited = a.post("/api/v1/agent/run", json=sample(2), headers={"Prefer": "wait=10"})
            assert waited.status_code == 200, waited.text
            body = waited.json()
            assert body["status"] == "COMPLETED" and body["output"]["status"] in ("ROUTED", "REVIEW")
            assert waited.headers["preference-applied"] == "wait=10"
            # The same claim again: the same run, answered with its decision, no second run.
            again = a.post("/api/v1/agent/run", json=sample(2))
            assert again.status_code == 200 and again.json()["run_id"] == body["run_id"] and again.json()["duplicate"]
            assert again.json()["output"] == body["output"]
            # The run: timeline and decision; the list; the trace with spans and gates.
            detail = a.get(f"/api/v1/runs/{run_id}").json()
            assert detail["status"] == done["status"] and [e["seq"] for e in detail["timeline"]] == seqs
            listed = a.get("/api/v1/runs", params={"status": "COMPLETED"}).json()["runs"]
            assert body["run_id"] in {r["run_id"] for r in listed}
            trace = wait_for(lambda: (t := a.get(f"/api/v1/runs/{body['run_id']}/trace").json())["spans"] and t, 30,
                             "the run's spans")
            assert {"orchestrator.run"} <= {s["name"] for s in trace["spans"]} and trace["gates"], trace
            assert trace["latency_budget_ms"] and trace["summary"]
            # Replay: operators only, a report, nothing written.
            assert v.post(f"/api/v1/runs/{run_id}/replay").status_code == 403
            report = a.post(f"/api/v1/runs/{run_id}/replay")
            assert report.status_code == 200, report.text
            assert report.json()["attempts"] and set(report.json()["counts"]) <= {"same", "failure reproduced"}
            # Tenant isolation both ways: another tenant's runs do not exist for you.
            theirs = g.post("/api/v1/agent/run", json=sample(3), headers={"Prefer": "wait=10"})
            assert theirs.status_code in (200, 202) and theirs.json()["run_id"].startswith("fnol:globex:")
            other = theirs.json()["run_id"]
            wait_for(lambda: _ended(g, other), 60, "globex's run to end")
            for path in (f"/api/v1/runs/{other}", f"/api/v1/runs/{other}/trace", f"/api/v1/runs/{other}/events"):
                assert a.get(path).status_code == 404, path
            for path in (f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/trace", f"/api/v1/runs/{run_id}/events"):
                assert g.get(path).status_code == 404, path
            assert g.post(f"/api/v1/runs/{run_id}/replay").status_code == 404
            assert {r["run_id"] for r in g.get("/api/v1/runs").json()["runs"]} == {other}
            assert other not in {r["run_id"] for r in a.get("/api/v1/runs").json()["runs"]}
            assert g.post("/api/v1/agent/run", json=sample(4, tenant_id="acme")).status_code == 403
            # /metrics counts the runs the journal ended, as the workers' own durable.runs does.
            text = a.get("/metrics").text
            ended = [line for line in text.splitlines() if line.startswith("durable_runs_total{")]
            assert sum(float(line.rsplit(" ", 1)[1]) for line in ended) >= 3, ended


def test_dead_letters_through_http_and_redrive_by_operators(settings: Settings, workers: WorkerProcesses) -> None:
    workers.start("w1")
    with LiveGateway(settings) as gw:
        operator, viewer, other = gw.key("acme"), gw.key("acme", Role.VIEWER), gw.key("globex")
        with gw.client(operator) as a, gw.client(viewer) as v, gw.client(other) as g:
            # A claim with no contact details: documents cannot be requested, the step is dead-lettered, the run paused.
            r = a.post("/api/v1/agent/run", json=sample(4))
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            paused = wait_for(lambda: _ended(a, run_id), 60, "the run to end")
            # Paused, not compensated: the claim is ON_HOLD, its decision signed and checked like any other.
            assert paused["status"] == "PAUSED" and paused["output"]["status"] == "ON_HOLD", paused
            assert paused["signature"]["status"] == "verified", paused["signature"]
            again = a.post("/api/v1/agent/run", json=sample(4))
            assert again.status_code == 200 and again.json()["status"] == "PAUSED", again.text
            assert again.json()["output"] == paused["output"]
            letters = wait_for(lambda: v.get("/api/v1/deadletters").json()["dead_letters"], 30, "its dead letter")
            letter = next(x for x in letters if x["run_id"] == run_id)
            assert letter["status"] == "open" and letter["kind"] == "step"
            lid = letter["dead_letter_id"]
            shown = v.get(f"/api/v1/deadletters/{lid}")
            assert shown.status_code == 200 and shown.json()["attempts"], shown.text
            assert g.get(f"/api/v1/deadletters/{lid}").status_code == 404, "another tenant's letter does not exist"
            assert g.get("/api/v1/deadletters").json()["dead_letters"] == []
            assert g.post(f"/api/v1/deadletters/{lid}/redrive").status_code == 404
            assert v.post(f"/api/v1/deadletters/{lid}/redrive").status_code == 403
            redriven = a.post(f"/api/v1/deadletters/{lid}/redrive")
            assert redriven.status_code == 202 and redriven.json()["run_id"] == run_id, redriven.text
            wait_for(
                lambda: any(e["kind"] == "RUN_REDRIVEN" for e in a.get(f"/api/v1/runs/{run_id}").json()["timeline"]),
                60, "the worker to apply the redrive",
            )
            assert a.post(f"/api/v1/deadletters/{lid}/redrive").status_code == 200, "a second redrive is the first"
            assert v.get(f"/api/v1/deadletters/{lid}").json()["status"] == "redriven"
