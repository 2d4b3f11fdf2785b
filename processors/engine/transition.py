"""The orchestrator's transition: ``(state, event) -> (state, outgoing records)``.

Pure and deterministic: no clock, no randomness, no I/O. The same state and
event always give the same new state and the same outgoing records with the
same ids, which is what makes redelivery harmless (the runtime drops records
it already wrote) and what replay re-runs. An event that does not apply to the
state (a duplicate, a stale attempt, a result for a finished run) yields the
state unchanged and nothing to send.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from processors.engine.workflow import Workflow, canonical_json
from schemas.models import (
    JournalEvent,
    JournalKind,
    RunState,
    RunStatus,
    StepCommand,
    StepResult,
    StepState,
    StepStatus,
)


@dataclass(frozen=True)
class RunRequested:
    """A workflow input arrived: start a run unless it exists."""

    run_id: str
    input: dict[str, Any]
    at_ms: int


@dataclass(frozen=True)
class StepFinished:
    """A step attempt produced a result (output or error)."""

    result: StepResult
    at_ms: int


Event = RunRequested | StepFinished


@dataclass(frozen=True)
class Outgoing:
    """A record the transition asks the runtime to write.

    ``kind`` says where: a step command, a journal event, or the workflow's
    output (its ``record`` is a plain dict for the workflow's output schema).
    """

    kind: Literal["command", "journal", "output"]
    message_id: str
    record: StepCommand | JournalEvent | dict[str, Any]


@dataclass(frozen=True)
class Transition:
    state: RunState | None
    outgoing: list[Outgoing] = field(default_factory=list)
    applied: bool = False
    note: str = ""


def output_id(run_id: str) -> str:
    """The id of a run's output record (e.g. its decision): one per run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"durable:output:{run_id}"))


class _Builder:
    """Accumulates one transition's changes over an immutable RunState."""

    def __init__(self, wf: Workflow, state: RunState, at_ms: int) -> None:
        self.wf = wf
        self.at_ms = at_ms
        self.run_id = state.run_id
        self.status = state.status
        self.input_json = state.input_json
        self.seq = state.seq
        self.started_at_ms = state.started_at_ms
        self.steps = {s.name: s for s in state.steps}
        self.out: list[Outgoing] = []

    def journal(
        self,
        kind: JournalKind,
        step: str | None = None,
        attempt: int | None = None,
        detail: Any = None,
    ) -> None:
        self.seq += 1
        event = JournalEvent(
            event_id=f"{self.run_id}/{self.seq}",
            run_id=self.run_id,
            workflow=self.wf.name,
            seq=self.seq,
            kind=kind,
            at_ms=self.at_ms,
            step=step,
            attempt=attempt,
            detail_json=None if detail is None else canonical_json(detail),
        )
        self.out.append(Outgoing("journal", event.event_id, event))

    def outputs(self) -> dict[str, Any]:
        return {
            name: json.loads(s.output_json)
            for name, s in self.steps.items()
            if s.status is StepStatus.SUCCEEDED and s.output_json is not None
        }

    def schedule(self, name: str, attempt: int) -> None:
        spec = self.wf.step(name)
        outputs = self.outputs()
        step_input = {
            "input": json.loads(self.input_json),
            "deps": {dep: outputs[dep] for dep in spec.after},
        }
        command = StepCommand(
            command_id=f"{self.run_id}/{name}/{attempt}",
            run_id=self.run_id,
            workflow=self.wf.name,
            step=name,
            attempt=attempt,
            input_json=canonical_json(step_input),
            scheduled_at_ms=self.at_ms,
            timeout_ms=int(spec.timeout_s * 1000),
        )
        self.steps[name] = StepState(name=name, status=StepStatus.SCHEDULED, attempt=attempt)
        self.journal(JournalKind.STEP_SCHEDULED, name, attempt, step_input)
        self.out.append(Outgoing("command", command.command_id, command))

    def schedule_ready(self) -> None:
        for spec in self.wf.steps:
            state = self.steps[spec.name]
            if state.status is StepStatus.PENDING and all(
                self.steps[d].status is StepStatus.SUCCEEDED for d in spec.after
            ):
                self.schedule(spec.name, 1)

    def finish_ok(self) -> None:
        run_input = json.loads(self.input_json)
        result = self.wf.result(self.run_id, run_input, self.outputs(), self.at_ms)
        self.status = RunStatus.COMPLETED
        self.journal(JournalKind.RUN_COMPLETED, detail=result)
        self.out.append(Outgoing("output", output_id(self.run_id), result))

    def finish_failed(self, reason: str) -> None:
        run_input = json.loads(self.input_json)
        result = self.wf.on_failure(self.run_id, run_input, reason, self.at_ms)
        self.status = RunStatus.FAILED
        self.journal(JournalKind.RUN_FAILED, detail={"reason": reason, "output": result})
        self.out.append(Outgoing("output", output_id(self.run_id), result))

    def build(self, note: str) -> Transition:
        state = RunState(
            run_id=self.run_id,
            workflow=self.wf.name,
            status=self.status,
            input_json=self.input_json,
            seq=self.seq,
            started_at_ms=self.started_at_ms,
            updated_at_ms=self.at_ms,
            steps=[self.steps[s.name] for s in self.wf.steps],
        )
        return Transition(state, self.out, applied=True, note=note)


def start(wf: Workflow, event: RunRequested) -> Transition:
    empty = RunState(
        run_id=event.run_id,
        workflow=wf.name,
        status=RunStatus.RUNNING,
        input_json=canonical_json(event.input),
        seq=0,
        started_at_ms=event.at_ms,
        updated_at_ms=event.at_ms,
        steps=[StepState(name=s.name, status=StepStatus.PENDING) for s in wf.steps],
    )
    b = _Builder(wf, empty, event.at_ms)
    b.journal(JournalKind.RUN_STARTED, detail=event.input)
    b.schedule_ready()
    if not wf.steps:
        b.finish_ok()
    return b.build("run started")


def transition(wf: Workflow, state: RunState | None, event: Event) -> Transition:
    """Apply ``event`` to the run ``state`` of workflow ``wf``."""
    if isinstance(event, RunRequested):
        if state is not None:
            return Transition(state, note="duplicate run request ignored")
        return start(wf, event)

    result = event.result
    if state is None:
        return Transition(None, note="result for an unknown run ignored")
    if state.status is not RunStatus.RUNNING:
        return Transition(state, note="result for a finished run ignored")
    if not wf.has_step(result.step):
        return Transition(state, note=f"result for unknown step {result.step!r} ignored")
    current = next(s for s in state.steps if s.name == result.step)
    if current.status is not StepStatus.SCHEDULED or current.attempt != result.attempt:
        return Transition(state, note="duplicate or stale result ignored")

    b = _Builder(wf, state, event.at_ms)
    name, attempt = result.step, result.attempt
    if result.error is None:
        output = json.loads(result.output_json or "{}")
        b.steps[name] = StepState(
            name=name,
            status=StepStatus.SUCCEEDED,
            attempt=attempt,
            output_json=canonical_json(output),
        )
        b.journal(JournalKind.STEP_SUCCEEDED, name, attempt, output)
        if all(s.status is StepStatus.SUCCEEDED for s in b.steps.values()):
            b.finish_ok()
        else:
            b.schedule_ready()
        return b.build(f"{name} succeeded")

    error = result.error.model_dump(mode="json")
    b.journal(JournalKind.STEP_FAILED, name, attempt, error)
    spec = wf.step(name)
    if result.error.retryable and attempt < spec.max_attempts:
        b.schedule(name, attempt + 1)
        return b.build(f"{name} failed, attempt {attempt + 1} scheduled")
    b.steps[name] = StepState(
        name=name,
        status=StepStatus.FAILED,
        attempt=attempt,
        error_json=canonical_json(error),
    )
    reason = f"step {name} failed after {attempt} attempt(s): {result.error.type}: {result.error.message}"
    b.finish_failed(reason)
    return b.build(f"{name} failed, run failed")
