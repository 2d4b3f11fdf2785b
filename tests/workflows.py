"""Workflows used only by tests: generic, tiny, and with knobs for timing."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from processors.engine.transition import output_id
from processors.engine.workflow import Step, StepContext, StepFailure, Workflow


async def _slow(ctx: StepContext) -> dict[str, Any]:
    await asyncio.sleep(float(os.environ.get("TEST_STEP_DELAY_S", "0.2")))
    return {"step": ctx.step, "n": int(ctx.input.get("n", 0)) + len(ctx.deps)}


def _fail(ctx: StepContext) -> dict[str, Any]:
    raise StepFailure("this step always fails", retryable=False)


def _result(run_id: str, inp: Any, outputs: Any, at_ms: int) -> dict[str, Any]:
    return {
        "decision_id": output_id(run_id),
        "claim_id": str(inp["claim_id"]),
        "tenant_id": str(inp["tenant_id"]),
        "run_id": run_id,
        "status": "ROUTED",
        "queue": "test",
        "severity": "LOW",
        "reserve": float(len(outputs)),
        "currency": "GBP",
        "documents_requested": [],
        "reasons": [],
        "decided_at_ms": at_ms,
    }


def _failed(run_id: str, inp: Any, reason: str, at_ms: int) -> dict[str, Any]:
    return {**_result(run_id, inp, {}, at_ms), "status": "FAILED", "reasons": [reason]}


def _run_id(rec: Any) -> str:
    return f"fnol-{rec['tenant_id']}-{rec['claim_id']}"


def _wf(name: str, steps: tuple[Step, ...]) -> Workflow:
    # Uses the FNOL input and decision schemas so the CLI and fixtures can drive it.
    return Workflow(
        name=name,
        steps=steps,
        input_topic="fnol.reported",
        input_schema="durable.fnol.FnolReported",
        output_topic="decisions",
        output_schema="durable.fnol.RoutedDecision",
        run_id_of=_run_id,
        result=_result,
        on_failure=_failed,
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
