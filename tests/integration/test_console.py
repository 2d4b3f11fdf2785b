"""The web console in real Chromium (Debian's package, driven by playwright) against a live gateway and worker.

Sign in with a key by keyboard, watch a run appear in the list and finish,
open its trace card (waterfall, decision line, budgets, journal) and replay
it, then open the dead letter of a claim whose documents could not be
requested and redrive it. No request may leave the gateway's origin and no
script error may happen. Screenshots go to ``artifacts/console/``.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from connectors.console import mount_console
from connectors.gateway.app import create_app
from connectors.gateway.config import GatewayConfig
from connectors.gateway.keys import KeyStore, Role
from processors.fnol import FNOL
from processors.fnol.intake import SAMPLES
from streams.config import Settings
from streams.worker import Worker
from tests.conftest import ROOT, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "console"
TIMEOUT_MS = 60_000


def _sample(claim_id: str) -> dict[str, Any]:
    for line in SAMPLES.read_text().splitlines():
        report: dict[str, Any] = json.loads(line)
        if report["claim_id"] == claim_id:
            return report
    raise AssertionError(f"no sample {claim_id}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A gateway (console mounted) and an FNOL worker on the test's namespace; yields its URL and an operator key."""
    config = GatewayConfig(state_dir=tmp_path / "gateway")
    key, _ = KeyStore(config.keys_path).create("acme", Role.OPERATOR, "console test")
    app = create_app(settings, config, [FNOL])
    mount_console(app)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    worker = Worker(settings, [FNOL]).start()
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the gateway to start")
        yield f"http://127.0.0.1:{port}", key
        assert worker.failed is None, worker.failed
    finally:
        server.should_exit = True
        thread.join(15)
        worker.stop()
        worker.join(20)


def _chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the console's browser test needs Debian's 'chromium' package "
            "(`make test` installs it as root; else `apt-get install -y chromium`)"
        )
    return str(CHROMIUM)


def _submit(base: str, key: str, report: dict[str, Any]) -> str:
    answer = httpx.post(f"{base}/api/v1/agent/run", json=report, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code in (200, 202), answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_sign_in_watch_a_run_open_its_trace_and_redrive_a_dead_letter(console: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, key = console
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        elsewhere: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:") else elsewhere.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            # Sign in by keyboard: the key field has focus, Enter submits.
            page.goto(base + "/")
            expect(page.locator("#apikey")).to_be_focused()
            page.keyboard.type(key)
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Runs")).to_be_visible()
            expect(page.locator("#who")).to_contain_text("acme")

            # A run appears in the live list and finishes there.
            routed = _submit(base, key, _sample("CLM-100001"))
            row = page.locator(f'tr[data-run="{routed}"]')
            expect(row).to_be_visible()
            expect(row.locator(".badge")).to_have_text("COMPLETED")
            _shot(page, "runs-list")

            # Its trace card: spans from orchestrator.plan to the evaluator, the decision line, budgets, journal.
            row.get_by_role("link").click()
            for span in ("orchestrator.run", "orchestrator.plan", "tool.vision", "evaluator"):
                expect(page.locator(f'li.span[data-span="{span}"]')).to_be_visible()
            expect(page.locator(".decision")).to_contain_text(" · reserve £")
            expect(page.locator(".budgets")).to_contain_text("Latency")
            expect(page.locator(".budgets")).to_contain_text("of $")  # cost against the tenant's budget
            expect(page.locator('li.span[data-span="evaluator"] .mark')).to_have_text("✓")
            expect(page.locator("ol.timeline")).to_contain_text("RUN_COMPLETED")
            _shot(page, "run-trace-1280")
            page.get_by_role("button", name="Replay").click()
            expect(page.get_by_role("heading", name="Replay report")).to_be_focused()
            expect(page.locator("#replay")).to_contain_text("would complete")
            page.set_viewport_size({"width": 390, "height": 844})
            page.get_by_role("heading", name="Replay report").scroll_into_view_if_needed()
            _shot(page, "run-trace-phone")
            page.set_viewport_size({"width": 1280, "height": 800})

            # A claimant who left no email or phone: documents cannot be requested, the step is dead-lettered.
            unreachable = _submit(base, key, _sample("CLM-100005"))
            page.goto(f"{base}/#/runs/{unreachable}")
            expect(page.locator("ol.timeline")).to_contain_text("STEP_DEAD_LETTERED")
            page.get_by_role("link", name="Dead letters").click()
            letter = page.locator(f'details[data-letter^="{unreachable}/request_documents"]')
            letter.locator("summary").click()
            expect(letter).to_contain_text("ClaimantUnreachable")
            expect(letter).to_contain_text("Traceback")
            expect(letter.locator("pre.json").first).to_be_visible()
            letter.get_by_role("button", name="Redrive").click()
            expect(letter).to_contain_text("Redrive requested")
            _shot(page, "dead-letter-redriven")
        finally:
            browser.close()
    assert not errors, errors
    assert not elsewhere, f"the console asked for something beyond its gateway: {elsewhere}"
    wait_for(
        lambda: any(
            e["kind"] == "RUN_REDRIVEN"
            for e in httpx.get(f"{base}/api/v1/runs/{unreachable}", headers={"Authorization": f"Bearer {key}"}).json()[
                "timeline"
            ]
        ),
        30,
        "the redrive in the run's journal",
    )
