"""Workflows used only by tests: generic (records of their own, nothing of FNOL's), tiny, with knobs for timing.

They take an ``OrderPlaced`` from ``<ns>.orders.placed`` and write an
``OrderOutcome`` to ``<ns>.orders.outcomes`` (``tests/records/``). FNOL with a
changed step, for replay tests, is at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from processors.engine import RetryPolicy, RunFailure, RunResult, Step, StepContext, StepFailure, Workflow
from processors.fnol import FNOL
from processors.fnol import tools as fnol_tools

RECORDS = Path(__file__).resolve().parent / "records"
INPUT_TOPIC = "orders.placed"
OUTPUT_TOPIC = "orders.outcomes"


async def _slow(ctx: StepContext) -> dict[str, Any]:
    await asyncio.sleep(float(os.environ.get("TEST_STEP_DELAY_S", "0.2")))
    return {"step": ctx.step, "n": int(ctx.input.get("n", 0)) + len(ctx.deps)}


def _fail(ctx: StepContext) -> dict[str, Any]:
    raise StepFailure("this step always fails", retryable=False)


def _result(run: RunResult) -> dict[str, Any]:
    return {
        "outcome_id": run.output_id,
        "run_id": run.run_id,
        "order_id": str(run.input["order_id"]),
        "status": "DONE",
        "outcome": "COMPLETED",
        "reasons": [],
        "steps": len(run.outputs),
        "decided_at_ms": run.at_ms,
    }


def _failed(failure: RunFailure) -> dict[str, Any]:
    ok = RunResult(failure.run_id, failure.input, {}, failure.at_ms, failure.output_id, failure.generation)
    return {**_result(ok), "status": "FAILED", "outcome": failure.outcome, "reasons": [failure.reason]}


def run_id_of(order: Any) -> str:
    return f"order-{order['order_id']}"


def _wf(name: str, steps: tuple[Step, ...]) -> Workflow:
    """A test workflow on the order topics; steps default to a single attempt unless they say otherwise."""
    return Workflow(
        name=name,
        steps=steps,
        input_topic=INPUT_TOPIC,
        input_schema="durable.tests.OrderPlaced",
        output_topic=OUTPUT_TOPIC,
        output_schema="durable.tests.OrderOutcome",
        run_id_of=run_id_of,
        result=_result,
        on_failure=_failed,
        schemas=(RECORDS,),
        diff_ignores=frozenset({"decided_at_ms"}),
    )


SLOW = _wf(
    "slow",
    (
        Step("a", _slow),
        Step("b", _slow, after=("a",)),
        Step("c", _slow, after=("a",)),
        Step("d", _slow, after=("b", "c")),
    ),
)

FAILING = _wf("failing", (Step("a", _slow), Step("boom", _fail, after=("a",))))


# ---------------------------------------------------------------- retries, dead letters, compensation
#
# Knobs come from the environment, read when a step runs, so the same workflows
# run in-process and in `durable worker` subprocesses: TEST_FAIL_ATTEMPTS
# (attempts of `flaky` that fail), TEST_FLAKY_PREFIX (only orders whose id
# starts with it fail), TEST_FIXED_FILE (while it does not exist, `notify`
# fails), TEST_UNDO_FAILS=1 (undoing `charge` fails).


class Declined(Exception):
    """A business refusal: retrying cannot change it."""


async def _flaky(ctx: StepContext) -> dict[str, Any]:
    failing = str(ctx.input["order_id"]).startswith(os.environ.get("TEST_FLAKY_PREFIX", ""))
    if failing and ctx.attempt <= int(os.environ.get("TEST_FAIL_ATTEMPTS", "2")):
        raise ConnectionError(f"attempt {ctx.attempt} of {ctx.run_id}: upstream reset the connection")
    return {"attempt": ctx.attempt}


async def _declines(ctx: StepContext) -> dict[str, Any]:
    raise Declined(f"{ctx.input['order_id']} declined")


def _hangs(ctx: StepContext) -> dict[str, Any]:
    if str(ctx.input["order_id"]).startswith("HANG"):
        time.sleep(5)  # a blocking call that does not answer within the step's 0.5 s timeout
    return {"ok": True}


async def _ok(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step, "order": ctx.input["order_id"]}


async def _notify(ctx: StepContext) -> dict[str, Any]:
    fixed = os.environ.get("TEST_FIXED_FILE")
    if not fixed or not os.path.exists(fixed):
        raise ConnectionError("notification service refused the message")
    return {"notified": True}


async def _undo(ctx: StepContext) -> dict[str, Any]:
    if ctx.step == "charge" and os.environ.get("TEST_UNDO_FAILS") == "1":
        raise ConnectionError("ledger unavailable")
    return {"undone": ctx.step, "had": dict(ctx.output or {})}


def _flaky_wf(name: str, backoff_s: float) -> Workflow:
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=backoff_s, multiplier=2.0, jitter=0.1)
    return _wf(name, (Step("first", _ok), Step("flaky", _flaky, after=("first",), retry=policy)))


FLAKY = _flaky_wf("flaky", 0.3)
FLAKY_LONG = _flaky_wf("flaky_long", 5.0)

DECLINES = _wf(
    "declines",
    (Step("first", _ok), Step("pay", _declines, after=("first",), retry=RetryPolicy(non_retryable=(Declined,)))),
)

HANGS = _wf(
    "hangs",
    (Step("hang", _hangs, timeout_s=0.5, retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.1)),),
)

QUICK_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, multiplier=2.0)
SAGA = _wf(
    "saga",
    (
        Step("reserve", _ok, compensate=_undo, compensate_retry=QUICK_RETRY),
        Step("charge", _ok, after=("reserve",), compensate=_undo, compensate_retry=QUICK_RETRY),
        Step("audit", _ok, after=("reserve",)),
        Step("notify", _notify, after=("charge", "audit"), retry=QUICK_RETRY),
    ),
)

# The same saga whose notify pauses the run when it runs out of attempts: nothing is undone until an operator says so.
SAGA_PAUSING = _wf(
    "saga-pausing",
    (
        Step("reserve", _ok, compensate=_undo, compensate_retry=QUICK_RETRY),
        Step("charge", _ok, after=("reserve",), compensate=_undo, compensate_retry=QUICK_RETRY),
        Step("audit", _ok, after=("reserve",)),
        Step("notify", _notify, after=("charge", "audit"), retry=dataclasses.replace(QUICK_RETRY, on_exhausted="pause")),
    ),
)

# ---------------------------------------------------------------- the same workflows after a code change (for replay)


async def _notify_fixed(ctx: StepContext) -> dict[str, Any]:
    return {"notified": True}


SAGA_FIXED = dataclasses.replace(
    SAGA, steps=tuple(dataclasses.replace(s, handler=_notify_fixed) if s.name == "notify" else s for s in SAGA.steps)
)


def _route_glass_to_partner(ctx: StepContext) -> dict[str, Any]:
    routed = fnol_tools.route(ctx)
    if routed["queue"] == "fast_track_glass":  # the deliberate rule change
        routed = {**routed, "queue": "glass_partner"}
    return routed


FNOL_GLASS_RULE = dataclasses.replace(
    FNOL,
    steps=tuple(dataclasses.replace(s, handler=_route_glass_to_partner) if s.name == "route" else s for s in FNOL.steps),
)


def _request_documents_by_post(ctx: StepContext) -> dict[str, Any]:
    """The fix for claimants who left no email or phone: ask by post, through the broker of record."""
    try:
        return fnol_tools.request_documents(ctx)
    except fnol_tools.ClaimantUnreachable:
        documents = list(ctx.deps["route"]["documents_requested"])
        return {"channel": "post", "to": "broker_of_record", "documents": documents}


FNOL_POSTAL = dataclasses.replace(
    FNOL,
    steps=tuple(
        dataclasses.replace(s, handler=_request_documents_by_post) if s.name == "request_documents" else s
        for s in FNOL.steps
    ),
)
