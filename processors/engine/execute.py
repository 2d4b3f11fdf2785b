"""Running one step attempt: the handler, its timeout, and its error captured as data."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from processors.engine.canonical import canonical_json
from processors.engine.context import StepContext, StepHandler
from processors.engine.errors import UnknownStep
from processors.engine.recorder import Recorder
from processors.engine.snapshot import capture
from processors.engine.versions import resolve
from processors.engine.workflow import Workflow
from processors.models import ModelClient
from schemas.models import StepCommand, StepError, StepResult

# Synchronous handlers run here, so a hung one cannot block the event loop;
# a thread that outlives its timeout is abandoned (Python cannot kill it).
_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="step")


def _error(exc: BaseException, retryable: bool) -> StepError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return StepError(type=type(exc).__name__, message=str(exc), traceback=tb[-8000:], retryable=retryable)


async def _call(handler: StepHandler, ctx: StepContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(ctx)
    value = await asyncio.get_running_loop().run_in_executor(_THREADS, handler, ctx)
    return await value if inspect.isawaitable(value) else value


async def run_step(
    workflows: Mapping[str, Workflow],
    command: StepCommand,
    worker: str,
    *,
    models: ModelClient | None = None,
    recorder: Recorder | None = None,
    settings: Mapping[str, Any] | None = None,
) -> StepResult:
    """Execute ``command`` (a step or its compensation) and describe the outcome; never raises for step errors.

    The attempt reaches time, randomness and ``models`` through ``recorder``
    (a live one by default); what it used is returned as ``recorded_json``.
    It runs under this process's settings of the workflow, overridden by
    ``settings`` (a recorded snapshot, on replay); the snapshot it ran under
    is returned as ``settings_json``.
    """
    started = int(time.time() * 1000)
    recorder = recorder or Recorder(models=models)
    output_json: str | None = None
    error: StepError | None = None
    snapshot: dict[str, Any] | None = None
    try:
        wf = resolve(workflows, command.workflow, command.workflow_version)
        if wf is None or not wf.has_step(command.step):
            version = f" (version {command.workflow_version})" if command.workflow_version else ""
            raise UnknownStep(f"no step {command.workflow}.{command.step}{version} in this worker")
        spec = wf.step(command.step)
        handler = spec.compensate if command.action == "compensate" else spec.handler
        if handler is None or command.action not in ("run", "compensate"):
            raise UnknownStep(f"step {command.workflow}.{command.step} has no action {command.action!r}")
        snapshot = {**capture(wf), **(settings or {})}
        payload = json.loads(command.input_json)
        ctx = StepContext(
            run_id=command.run_id,
            workflow=command.workflow,
            step=command.step,
            attempt=command.attempt,
            input=payload["input"],
            deps=payload["deps"],
            action="compensate" if command.action == "compensate" else "run",
            output=payload.get("output"),
            run_started_at_ms=int(payload.get("run", {}).get("started_at_ms", 0)),
            recorder=recorder,
            settings=snapshot,
        )
        try:
            output = await asyncio.wait_for(_call(handler, ctx), timeout=command.timeout_ms / 1000)
            if not isinstance(output, dict):
                raise TypeError(f"step {command.step} returned {type(output).__name__}, not a dict")
            output_json = canonical_json(output)
        except TimeoutError:
            timeout = TimeoutError(f"step {command.step} ({command.action}) timed out after {command.timeout_ms} ms")
            error = _error(timeout, spec.policy(command.action).retries(timeout))
        except Exception as exc:
            error = _error(exc, spec.policy(command.action).retries(exc))
    except UnknownStep as exc:
        error = _error(exc, retryable=False)
    except Exception as exc:  # a command we cannot even parse: no retry will help
        error = _error(exc, retryable=False)
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
        action=command.action,
        recorded_json=canonical_json(recorder.calls) if recorder.calls else None,
        settings_json=canonical_json(snapshot) if snapshot is not None else None,
    )
