"""Pause instead of undo: a step whose policy pauses leaves its run PAUSED; a redrive resumes it, an operator undoes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import wait_for
from tests.helpers import assert_exactly_once, journal, outcomes, produce_orders, sample_orders
from tests.integration.test_retries import by_run, cli
from tests.integration.test_telemetry import _spans
from tests.workflows import OUTPUT_TOPIC

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Worker, Path]]:
    fixed = tmp_path / "notification-service-fixed"
    monkeypatch.setenv("TEST_FIXED_FILE", str(fixed))  # notify fails until this file exists
    w = Worker(settings, load_workflows(["tests.workflows:SAGA_PAUSING"])).start()
    try:
        yield w, fixed
    finally:
        w.stop()
        w.join(15)


def _run_spans(settings: Settings, run_id: str) -> dict[int, str]:
    """The run's root spans on the traces topic: status by generation."""
    roots = {}
    for span in _spans(settings):
        attrs = json.loads(span.attributes_json)
        if span.name == "orchestrator.run" and span.run_id == run_id:
            roots[attrs["durable.generation"]] = attrs["durable.status"]
    return roots


def kinds(settings: Settings, run_id: str) -> list[tuple[str, str | None, int | None]]:
    return [(e["kind"], e["step"], e["attempt"]) for e in by_run(settings).get(run_id, [])]


def paused(settings: Settings, run_id: str, w: Worker) -> list[tuple[str, str | None, int | None]]:
    found = wait_for(
        lambda: k if ("RUN_PAUSED", "notify", 3) in (k := kinds(settings, run_id)) or w.failed else None,
        60,
        f"run {run_id} to pause",
    )
    assert w.failed is None
    return found


def test_a_paused_run_undoes_nothing_and_a_redrive_resumes_it_where_it_stopped(
    settings: Settings, worker: tuple[Worker, Path]
) -> None:
    w, fixed = worker
    [order] = sample_orders(1, prefix="P")
    produce_orders(settings, [order])
    before = paused(settings, order.run_id, w)
    assert ("STEP_DEAD_LETTERED", "notify", 3) in before
    assert not [k for k in before if k[0].startswith("COMPENSATION") or k[0] == "RUN_COMPENSATING"], before
    assert outcomes(settings) == [], "a paused run has no decision yet"
    listed = cli(settings, "runs", "list", "--status", "PAUSED")
    assert listed.returncode == 0 and "PAUSED" in listed.stdout and "│    1 │" in listed.stdout, listed.stdout

    fixed.touch()  # the notification service is back
    redriven = cli(settings, "dlq", "redrive", f"{order.run_id}/notify/run/3")
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    wait_for(lambda: outcomes(settings) or None, 60, "the resumed run's decision")
    [decision] = outcomes(settings)
    assert decision["status"] == "DONE"
    # Each generation's root span: the paused one closed as PAUSED, the resumed one as COMPLETED.
    roots = wait_for(
        lambda: r if len(r := _run_spans(settings, order.run_id)) >= 2 else None, 30, "both generations' spans"
    )
    assert roots == {0: "PAUSED", 1: "COMPLETED"}, roots
    after = kinds(settings, order.run_id)[len(before) :]
    assert after[0][0] == "RUN_REDRIVEN" and after[-1][0] == "RUN_COMPLETED", after
    assert ("STEP_SUCCEEDED", "notify", 4) in after
    assert not [k for k in after if k[1] in ("reserve", "charge", "audit")], "completed steps were not run again"
    assert_exactly_once(settings, {order.run_id}, OUTPUT_TOPIC)


def test_an_operator_compensates_a_paused_run_once_and_only_a_paused_one(
    settings: Settings, worker: tuple[Worker, Path]
) -> None:
    w, fixed = worker
    [order, later] = sample_orders(2, prefix="Q")
    produce_orders(settings, [order])
    paused(settings, order.run_id, w)

    done = cli(settings, "runs", "compensate", order.run_id, "--reason", "customer withdrew the order")
    assert done.returncode == 0 and "compensating" in done.stdout, done.stdout + done.stderr
    wait_for(lambda: outcomes(settings) or None, 60, "the compensated run's decision")
    [decision] = outcomes(settings)
    assert decision["outcome"] == "COMPENSATED"
    events = by_run(settings)[order.run_id]
    undone = [e["step"] for e in events if e["kind"] == "COMPENSATION_SUCCEEDED"]
    assert undone == ["charge", "reserve"], "completed steps undone, newest first"
    [began] = [e for e in events if e["kind"] == "RUN_COMPENSATING"]
    detail: dict[str, Any] = json.loads(began["detail_json"])
    assert detail["reason"] == "customer withdrew the order" and detail["compensated_by"], detail
    assert detail["dead_letter_id"] == f"{order.run_id}/notify/run/3", "the failure it answers is kept"
    journal_before = len(journal(settings))

    again = cli(settings, "runs", "compensate", order.run_id, "--reason", "clicked twice")
    assert again.returncode == 0 and "already" in again.stdout, again.stdout + again.stderr
    assert len(journal(settings)) == journal_before and len(outcomes(settings)) == 1, "twice is once"

    fixed.touch()
    produce_orders(settings, [later])
    wait_for(lambda: len(outcomes(settings)) == 2 or None, 60, "the later order's decision")
    refused = cli(settings, "runs", "compensate", later.run_id, "--reason", "not paused")
    assert refused.returncode == 1 and "is COMPLETED" in refused.stderr, refused.stdout + refused.stderr
    missing = cli(settings, "runs", "compensate", "order-nope", "--reason", "no such run")
    assert missing.returncode == 2 and "no run order-nope" in missing.stderr, missing.stdout + missing.stderr
