"""The gateway's edge on the real broker, no worker needed: keys, roles, bad input, limits, idempotency, health."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import replace

import httpx
import pytest

from connectors.gateway.keys import Role
from streams.config import Settings
from streams.topics import Topics
from tests.conftest import ROOT, read_topic, wait_for
from tests.gateway_helpers import LiveGateway, sample

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def _inputs(settings: Settings) -> list[dict[str, object]]:
    return read_topic(settings, Topics(settings.namespace).name("fnol.reported"))


def _problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, object] = r.json()
    assert body["status"] == status and body["title"]
    return body


def test_keys_and_roles_decide_who_may_do_what(settings: Settings) -> None:
    with LiveGateway(settings) as gw:
        viewer, submitter = gw.key(role=Role.VIEWER), gw.key(role=Role.SUBMITTER)
        report = sample(1)
        with gw.client() as anon:
            _problem(anon.post("/api/v1/agent/run", json=report), 401)
            _problem(anon.get("/api/v1/runs", headers={"Authorization": "Bearer not-a-key"}), 401)
            unknown = "dk_" + "0" * 12 + "_" + "A" * 43
            _problem(anon.get("/api/v1/runs", headers={"X-API-Key": unknown}), 401)
            tampered = submitter[:-1] + ("B" if submitter[-1] != "B" else "C")
            _problem(anon.get("/api/v1/runs", headers={"Authorization": f"Bearer {tampered}"}), 401)
        with gw.client(viewer) as c:
            _problem(c.post("/api/v1/agent/run", json=report), 403)  # viewers do not submit
            assert c.get("/api/v1/runs").status_code == 200
            assert c.get("/api/v1/deadletters").status_code == 200
            _problem(c.post("/api/v1/runs/fnol:acme:CLM-100002/replay"), 403)
            _problem(c.post("/api/v1/deadletters/x/redrive"), 403)
        with gw.client(submitter) as c:
            assert c.post("/api/v1/agent/run", json=report).status_code == 202
            assert c.get("/api/v1/runs").status_code == 200  # follows its runs
            _problem(c.get("/api/v1/deadletters"), 403)
        # Revoked through the CLI, refused by the running gateway from the next request on.
        key_id = submitter.split("_")[1]
        env = {**os.environ, "DURABLE_STATE_DIR": str(settings.state_dir)}
        listed = subprocess.run(
            [sys.executable, "-m", "streams.cli", "apikeys", "list", "--json"], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=60, check=True,
        )
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert {r["key_id"] for r in rows} >= {key_id} and all("secret" not in json.dumps(r) for r in rows)
        assert submitter not in gw.config.keys_path.read_text(), "the key file holds hashes, never keys"
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "apikeys", "revoke", key_id], cwd=ROOT, env=env, timeout=60, check=True
        )
        with gw.client(submitter) as c:
            _problem(c.get("/api/v1/runs"), 401)


def test_bad_input_is_a_clear_4xx_and_never_reaches_kafka(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    marker = "Zebediah Quartermaine"  # a name that must appear in no log line
    caplog.set_level(logging.DEBUG)
    with LiveGateway(settings, max_body_bytes=4096) as gw, gw.client(gw.key()) as c:
        url = "/api/v1/agent/run"
        good = sample(1, claimant={"name": marker, "email": "z@example.com"})
        _problem(c.post(url, content=json.dumps({**good, "description": "x" * 5000}),
                        headers={"Content-Type": "application/json"}), 413)
        _problem(c.post(url, content=json.dumps(good), headers={"Content-Type": "text/plain"}), 415)
        _problem(c.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 422)
        nan = json.dumps(good).replace('"estimated_amount": 450.0', '"estimated_amount": NaN')
        assert "NaN" in nan
        _problem(c.post(url, content=nan, headers={"Content-Type": "application/json"}), 422)
        _problem(c.post(url, content=b"[1, 2]", headers={"Content-Type": "application/json"}), 422)
        cases = {
            "estimated_amount": {**good, "estimated_amount": "450"},
            "policy_number": {k: v for k, v in good.items() if k != "policy_number"},
            "loss_date": {**good, "loss_date": "9999-01-01"},
            "description": {**good, "description": "bad\u0000byte"},
            "claimant.name": {**good, "claimant": {"name": marker + "\u001b[2J"}},
            "vehicle": {**good, "vehicle": json.loads("[" * 40 + "]" * 40)},
        }
        for field, body in cases.items():
            problem = _problem(c.post(url, json=body), 422)
            assert str(problem["field"]).startswith(field), (field, problem)
        odd = c.post(url, content=b'{"\\ud800": "\\u0000"}', headers={"Content-Type": "application/json"})
        _problem(odd, 422)  # a lone surrogate in a field name is quoted back escaped, not a 500
        deep = '{"a":' * 600 + "1" + "}" * 600  # valid JSON, within the size limit, absurdly nested
        assert str(_problem(c.post(url, content=deep, headers={"Content-Type": "application/json"}), 422)["field"]).startswith("a.a.a")
        # Another tenant named in the body: the key decides the tenant.
        _problem(c.post(url, json={**good, "tenant_id": "globex"}), 403)
        assert c.get("/healthz").json()["status"] == "ok"
    assert _inputs(settings) == [], "no rejected report may reach Kafka"
    assert marker not in caplog.text, "nothing of a rejected body is logged"


def test_same_claim_is_same_run_and_another_body_is_409(settings: Settings) -> None:
    with LiveGateway(settings) as gw, gw.client(gw.key()) as c:
        first = c.post("/api/v1/agent/run", json=sample(1))
        assert first.status_code == 202, first.text
        run_id = first.json()["run_id"]
        assert run_id == "fnol:acme:CLM-100002" and first.headers["location"] == f"/api/v1/runs/{run_id}"
        status = c.get(first.json()["status_url"])  # no worker yet: accepted, not started
        assert status.status_code == 200 and status.json()["status"] == "ACCEPTED", status.text
        again = c.post("/api/v1/agent/run", json=sample(1, tenant_id="acme"))
        assert again.status_code == 202 and again.json()["run_id"] == run_id and again.json()["duplicate"] is True
        conflict = _problem(c.post("/api/v1/agent/run", json=sample(1, estimated_amount=1.0)), 409)
        assert conflict["run_id"] == run_id
        # Idempotency-Key: the same key with the same body is the same answer; with another body, 422.
        keyed = {"Idempotency-Key": "order-7"}
        assert c.post("/api/v1/agent/run", json=sample(2), headers=keyed).status_code == 202
        assert c.post("/api/v1/agent/run", json=sample(2), headers=keyed).json()["duplicate"] is True
        _problem(c.post("/api/v1/agent/run", json=sample(3), headers=keyed), 422)
    produced = _inputs(settings)
    assert sorted(r["claim_id"] for r in produced) == ["CLM-100002", "CLM-100003"], "each claim produced once"
    assert all("Oscar Smith" not in json.dumps(r) for r in produced), "the intake tokenised the claimant"


def test_rate_limit_is_429_with_retry_after_and_per_tenant(settings: Settings) -> None:
    rates = {"default": {"per_second": 0.05, "burst": 3}}  # 3 a minute: however slow the requests
    with LiveGateway(settings, rates=rates) as gw, gw.client(gw.key("acme")) as a, gw.client(gw.key("globex")) as b:
        codes = [a.get("/api/v1/runs").status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429, codes
        limited = a.get("/api/v1/runs")
        _problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert b.get("/api/v1/runs").status_code == 200, "another tenant has its own limit"


def test_gateways_sharing_redis_share_one_limit(settings: Settings) -> None:
    rates = {"default": {"per_second": 0.05, "burst": 3}}  # 3 a minute: however slow the requests
    tenant = f"t{uuid.uuid4().hex[:12]}"  # Redis outlives the test: a tenant of its own
    shared = {"rates": rates, "rate_storage": "redis://127.0.0.1:6379"}
    with LiveGateway(settings, **shared) as one, LiveGateway(replace(settings, state_dir=settings.state_dir / "two"), **shared) as two:
        key = one.key(tenant, Role.VIEWER)
        two.keys.path.parent.mkdir(parents=True, exist_ok=True)
        two.keys.path.write_bytes(one.keys.path.read_bytes())  # the same key file on both
        with one.client(key) as a, two.client(key) as b:
            codes = [c.get("/api/v1/runs").status_code for c in (a, b, a, b)]
        assert codes == [200, 200, 200, 429], f"one limit across both gateways: {codes}"


def test_backpressure_refuses_new_runs_while_the_engine_is_behind(settings: Settings) -> None:
    with LiveGateway(settings, max_input_lag=2) as gw, gw.client(gw.key()) as c:
        n = iter(range(1, 40))

        def refused() -> httpx.Response | None:
            r = c.post("/api/v1/agent/run", json=sample(next(n)))
            return r if r.status_code == 503 else None

        r = wait_for(refused, 30, "a 503 once more than 2 inputs wait with no worker")
        _problem(r, 503)
        assert int(r.headers["retry-after"]) >= 1
        assert len(_inputs(settings)) >= 3


def test_health_readiness_metrics_and_openapi(settings: Settings) -> None:
    with LiveGateway(settings) as gw, gw.client(gw.key()) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok", ready.text
        _problem(c.get("/api/v1/runs/fnol:acme:nothing"), 404)
        _problem(c.get("/api/v1/runs", params={"limit": 0}), 422)
        assert _problem(c.get("/api/v1/runs", params={"stauts": "FAILED"}), 422)["field"] == "stauts"
        _problem(c.get("/no/such/path"), 404)
        _problem(c.delete("/api/v1/runs"), 405)
        text = c.get("/metrics").text
        assert "durable_gateway_requests" in text and 'route="/api/v1/runs/{run_id}"' in text, text[:2000]
        assert "fnol:acme:nothing" not in text, "run ids are never metric labels"
        doc = c.get("/openapi.json").json()
        assert "FnolReport" in doc["components"]["schemas"]
