"""Running one attempt: timeouts that do not block the worker, and errors classified by the retry policy."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from processors.engine import RetryPolicy, RunFailure, RunResult, Step, StepContext, Workflow
from processors.engine.execute import run_step
from schemas.models import StepCommand

RELEASE = threading.Event()


class CardDeclined(Exception):
    pass


def hangs(ctx: StepContext) -> dict[str, Any]:
    RELEASE.wait(30)  # a synchronous call that never answers in time
    return {}


async def quick(ctx: StepContext) -> dict[str, Any]:
    return {"ok": ctx.attempt}


def declines(ctx: StepContext) -> dict[str, Any]:
    raise CardDeclined("card declined")


def flaky(ctx: StepContext) -> dict[str, Any]:
    raise ConnectionError("reset by peer")


def undo(ctx: StepContext) -> dict[str, Any]:
    return {"undid": dict(ctx.output or {}), "key": ctx.idempotency_key}


def _out(r: RunResult | RunFailure) -> dict[str, Any]:
    return {}


WF = Workflow(
    name="w",
    steps=(
        Step("hangs", hangs, timeout_s=0.2),
        Step("quick", quick),
        Step("declines", declines, retry=RetryPolicy(non_retryable=(CardDeclined,))),
        Step("flaky", flaky, compensate=undo),
    ),
    input_topic="i",
    input_schema="x",
    output_topic="o",
    output_schema="y",
    run_id_of=lambda r: "r",
    result=_out,
    on_failure=_out,
)


def command(step: str, action: str = "run", timeout_ms: int = 5_000, extra: dict[str, Any] | None = None) -> StepCommand:
    return StepCommand(
        command_id=f"r/{step}/1",
        run_id="r",
        workflow="w",
        step=step,
        attempt=1,
        input_json=json.dumps({"input": {}, "deps": {}, **(extra or {})}),
        scheduled_at_ms=0,
        timeout_ms=timeout_ms,
        action=action,
    )


def test_a_hung_synchronous_step_times_out_without_blocking_other_steps() -> None:
    async def both() -> tuple[Any, Any, bool]:
        hung = asyncio.create_task(run_step({"w": WF}, command("hangs", timeout_ms=200), "t"))
        await asyncio.sleep(0)  # let the hung step start and block its thread
        fast = await run_step({"w": WF}, command("quick"), "t")
        hung_still_running = not hung.done()
        return await hung, fast, hung_still_running

    try:
        hung, fast, hung_still_running = asyncio.run(both())
    finally:
        RELEASE.set()
    assert fast.error is None and json.loads(fast.output_json) == {"ok": 1}
    assert hung_still_running  # the quick step finished while the hung one held its thread
    assert hung.error is not None and hung.error.type == "TimeoutError" and hung.error.retryable
    assert "timed out after 200 ms" in hung.error.message


def test_errors_named_non_retryable_by_the_policy_are_marked_so() -> None:
    declined = asyncio.run(run_step({"w": WF}, command("declines"), "t"))
    assert declined.error is not None and declined.error.type == "CardDeclined" and not declined.error.retryable
    flaky_result = asyncio.run(run_step({"w": WF}, command("flaky"), "t"))
    assert flaky_result.error is not None and flaky_result.error.retryable
    assert "ConnectionError: reset by peer" in flaky_result.error.traceback


def test_a_compensation_runs_the_undo_handler_with_the_output_it_undoes() -> None:
    done = asyncio.run(run_step({"w": WF}, command("flaky", "compensate", extra={"output": {"held": 5}}), "t"))
    assert done.error is None and done.action == "compensate"
    assert json.loads(done.output_json or "") == {"undid": {"held": 5}, "key": "r/flaky/1/compensate"}


def test_compensating_a_step_without_compensation_is_a_clear_non_retryable_error() -> None:
    done = asyncio.run(run_step({"w": WF}, command("quick", "compensate"), "t"))
    assert done.error is not None and done.error.type == "UnknownStep" and not done.error.retryable
