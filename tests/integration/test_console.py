"""The web console in real Chromium (Debian's package, driven by playwright) against a live gateway and worker.

Sign in with a key by keyboard; open a run accepted before any worker runs
and watch its page fill in live from the event stream (trace card:
waterfall, decision line, budgets, journal), replay it; watch a second run
appear in the list and finish; open the dead letter of that claim (its
documents could not be requested) and redrive it. No request may leave the gateway's origin and no
script error may happen. Screenshots go to ``artifacts/console/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.console import mount_console
from connectors.gateway.keys import Role
from processors.fnol import FNOL
from processors.fnol.intake import SAMPLES
from streams.config import Settings
from streams.worker import Worker
from tests.conftest import ROOT, wait_for
from tests.gateway_helpers import LiveGateway

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "console"
TIMEOUT_MS = 45_000


def _sample(claim_id: str) -> dict[str, Any]:
    for line in SAMPLES.read_text().splitlines():
        report: dict[str, Any] = json.loads(line)
        if report["claim_id"] == claim_id:
            return report
    raise AssertionError(f"no sample {claim_id}")


def _forge(settings: Settings, run_id: str, tmp: Path) -> None:
    """Append the run's decision again, re-signed by a stranger's key, straight onto its partition."""
    from schemas.codec import decode
    from streams import audit, signed_outputs, signing
    from streams.kafka import producer
    from streams.topics import Topics

    [rec] = audit.read(settings, [Topics(settings.namespace).name("decisions")], {run_id}).outputs[run_id]
    _, record = decode(rec.value)
    forged = signed_outputs.sign(FNOL.output_schema, record, record["journal_head"], signing.generate(tmp / "x.key"))
    p = producer(settings)
    p.produce(rec.topic, forged, rec.key.encode(), partition=rec.partition)
    assert p.flush(30) == 0


class Stack:
    """A live gateway (console mounted) on the test's namespace, an operator key, and a worker started on demand."""

    def __init__(self, settings: Settings, gateway: LiveGateway, tmp: Path) -> None:
        self.settings, self.base, self.key = settings, gateway.url, gateway.key("acme", Role.OPERATOR)
        self.tmp = tmp
        self.worker: Worker | None = None

    def start_worker(self) -> None:
        self.worker = Worker(self.settings, [FNOL]).start()


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    gateway = LiveGateway(settings)
    mount_console(gateway.app)  # as the gateway does itself; a second call changes nothing
    with gateway:
        it = Stack(settings, gateway, tmp_path)
        try:
            yield it
            assert it.worker is None or it.worker.failed is None, it.worker.failed
        finally:
            if it.worker is not None:
                it.worker.stop()
                it.worker.join(20)


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


def _shot(page: Any, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_sign_in_follow_a_run_live_watch_the_list_and_redrive_a_dead_letter(stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, key = stack.base, stack.key
    expect.set_options(timeout=TIMEOUT_MS)  # a worker's first group join alone takes ~3.5 s on this broker
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
            expect(page.locator("#who")).to_contain_text("tenant acme · operator")

            # A run accepted while no worker runs: its page waits live, and fills in from the event stream
            # once a worker takes it (the page is never reloaded).
            routed = _submit(base, key, _sample("CLM-100001"))
            page.goto(f"{base}/#/runs/{routed}")
            expect(page.locator(".live")).to_have_text("● live")
            expect(page.locator(".heading .badge")).to_have_text("ACCEPTED")
            stack.start_worker()
            expect(page.locator("ol.timeline")).to_contain_text("RUN_COMPLETED")
            expect(page.locator(".heading .badge")).to_have_text("COMPLETED")
            expect(page.locator(".live")).to_have_text("")
            # Its trace card: spans from orchestrator.plan to the evaluator, the decision line, budgets.
            for span in ("orchestrator.run", "orchestrator.plan", "tool.vision", "evaluator"):
                expect(page.locator(f'li.span[data-span="{span}"]')).to_be_visible()
            expect(page.locator(".decision")).to_contain_text(" · reserve £")
            # The gateway checked the decision's signature before serving it, and the page says so.
            expect(page.locator(".signature")).to_contain_text("✓ Signature verified · key ")
            expect(page.locator(".budgets")).to_contain_text("Latency")
            expect(page.locator(".budgets")).to_contain_text("of $")  # cost against the tenant's budget
            expect(page.locator('li.span[data-span="evaluator"] .mark')).to_have_text("✓")
            _shot(page, "run-trace-1280")
            page.get_by_role("button", name="Replay").focus()  # operated by keyboard, as the rest below
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Replay report")).to_be_focused()
            expect(page.locator("#replay")).to_contain_text("would complete")
            page.set_viewport_size({"width": 390, "height": 844})
            page.evaluate("window.scrollTo(0, 0)")
            _shot(page, "run-trace-phone", full_page=False)
            page.set_viewport_size({"width": 1280, "height": 800})

            # The live list: a new run appears and comes to rest there. Its claimant left no email or phone, so
            # documents cannot be requested: the step is dead-lettered and the run paused, its reserve held.
            page.locator("#nav").get_by_role("link", name="Runs").click()
            expect(page.locator(f'tr[data-run="{routed}"] .badge')).to_have_text("COMPLETED")
            unreachable = _submit(base, key, _sample("CLM-100005"))
            row = page.locator(f'tr[data-run="{unreachable}"]')
            expect(row).to_be_visible()
            expect(row.locator(".badge")).to_have_text("PAUSED")
            _shot(page, "runs-list")
            page.get_by_label("Status").select_option("COMPLETED")  # the filter: only completed runs
            expect(row).to_have_count(0)
            expect(page.locator(f'tr[data-run="{routed}"]')).to_be_visible()
            page.get_by_label("Started").select_option("900")
            expect(page.locator(f'tr[data-run="{routed}"]')).to_be_visible()
            page.get_by_label("Status").select_option("")

            page.locator("#nav").get_by_role("link", name="Dead letters").click()
            letter = page.locator(f'details[data-letter^="{unreachable}/request_documents"]')
            letter.locator("summary").focus()
            page.keyboard.press("Enter")
            expect(letter).to_contain_text("ClaimantUnreachable")
            expect(letter).to_contain_text("Traceback (most recent call last)")
            expect(letter.locator("pre.json").last).to_contain_text('"claim_id": "CLM-100005"')  # the input
            letter.get_by_role("button", name="Redrive").focus()
            page.keyboard.press("Enter")
            expect(letter).to_contain_text("Redrive requested")
            _shot(page, "dead-letter-redriven")

            # The run pauses again (its claimant still left no contact details); an operator undoes it from its
            # page, saying why: the reserve is released and the run ends COMPENSATED.
            def timeline() -> list[str]:
                r = httpx.get(f"{base}/api/v1/runs/{unreachable}", headers={"Authorization": f"Bearer {key}"})
                return [e["kind"] for e in r.json()["timeline"]]

            wait_for(lambda: timeline().count("RUN_PAUSED") == 2, 60, "the redriven run to pause again")
            page.goto(f"{base}/#/runs/{unreachable}")
            word = page.locator("form.word")
            expect(word.get_by_role("button", name="Compensate")).to_be_visible()
            word.locator("#word-reason").fill("claimant withdrew the claim")
            _shot(page, "run-paused-operator-form")
            word.get_by_role("button", name="Compensate").click()
            expect(word.get_by_role("status")).to_contain_text("Compensate: requested")
            expect(page.locator(".heading .badge")).to_have_text("COMPENSATED", timeout=30_000)
            expect(word).to_be_hidden()
            _shot(page, "run-compensated-by-operator")
            assert "RUN_COMPENSATED" in timeline()

            # A decision re-signed by a key the gateway does not know: the page withholds it and says why.
            _forge(stack.settings, routed, stack.tmp)
            page.goto(f"{base}/#/runs/{routed}")
            expect(page.locator(".signature")).to_contain_text("✗ Decision withheld, its signature does not verify")
            expect(page.locator(".signature")).to_contain_text("unknown key id")
            expect(page.locator(".decision")).to_be_hidden()
            _shot(page, "run-decision-withheld")
            page.locator("#nav").get_by_role("link", name="Runs").click()
            expect(page.locator(f'tr[data-run="{routed}"] td.dline')).to_have_text("✗ withheld: signature invalid")
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
