"""Running one step attempt: the handler, its timeout, and its error captured as data."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback

from processors.engine.workflow import StepContext, StepFailure, Workflow, canonical_json
from schemas.models import StepCommand, StepError, StepResult


class UnknownStep(Exception):
    """The command names a workflow or step this worker does not have."""


def _error(exc: BaseException, retryable: bool) -> StepError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return StepError(type=type(exc).__name__, message=str(exc), traceback=tb[-8000:], retryable=retryable)


async def run_step(workflows: dict[str, Workflow], command: StepCommand, worker: str) -> StepResult:
    """Execute ``command`` and describe the outcome; never raises for step errors."""
    started = int(time.time() * 1000)
    output_json: str | None = None
    error: StepError | None = None
    try:
        wf = workflows.get(command.workflow)
        if wf is None or not wf.has_step(command.step):
            raise UnknownStep(f"no step {command.workflow}.{command.step} in this worker")
        spec = wf.step(command.step)
        payload = json.loads(command.input_json)
        ctx = StepContext(
            run_id=command.run_id,
            workflow=command.workflow,
            step=command.step,
            attempt=command.attempt,
            input=payload["input"],
            deps=payload["deps"],
        )

        async def call() -> object:
            value = spec.handler(ctx)
            return await value if inspect.isawaitable(value) else value

        output = await asyncio.wait_for(call(), timeout=command.timeout_ms / 1000)
        if not isinstance(output, dict):
            raise TypeError(f"step {command.step} returned {type(output).__name__}, not a dict")
        output_json = canonical_json(output)
    except UnknownStep as exc:
        error = _error(exc, retryable=False)
    except StepFailure as exc:
        error = _error(exc, retryable=exc.retryable)
    except TimeoutError as exc:
        error = _error(TimeoutError(f"step {command.step} timed out after {command.timeout_ms} ms"), True)
        del exc
    except Exception as exc:
        error = _error(exc, retryable=True)
    return StepResult(
        command_id=command.command_id,
        run_id=command.run_id,
        workflow=command.workflow,
        step=command.step,
        attempt=command.attempt,
        output_json=output_json,
        error=error,
        started_at_ms=started,
        finished_at_ms=int(time.time() * 1000),
        worker=worker,
    )
