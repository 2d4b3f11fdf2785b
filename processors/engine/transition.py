"""The orchestrator's transition: ``(state, event) -> (state, outgoing records)``.

Pure and deterministic: no clock, no randomness, no I/O. The same state and
event always give the same new state and the same outgoing records with the
same ids, which is what makes redelivery harmless (the runtime drops records
it already wrote) and what replay re-runs. An event that does not apply to the
state (a duplicate, a stale attempt, a timer that no longer waits, a redrive
already done) yields the state unchanged and nothing to send.

A run's life::

    RUNNING --(a step fails for good: dead letter)--> COMPENSATING
    RUNNING --(a step whose policy pauses fails for good: dead letter)--> PAUSED (output: ``on_pause``, if set)
    PAUSED --(redrive of its dead letter)--> RUNNING
    PAUSED --(an operator's compensate)--> COMPENSATING
    COMPLETED --(an operator's rollback)--> COMPENSATING --> COMPENSATED (a new output: the decision retracted)
    COMPENSATING --(steps in flight drain, completed steps undone newest first)--> COMPENSATED | FAILED
    RUNNING --(every step succeeded)--> COMPLETED
    COMPENSATED | FAILED --(redrive of its dead letter)--> RUNNING | COMPENSATING

A failed attempt with budget left waits out its backoff as a timer kept in
the run state (status WAITING, ``due_at_ms``); the runtime turns due timers
into :class:`TimerFired` events, so a waiting retry survives any restart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from processors.engine.canonical import canonical_json
from processors.engine.changes import RunChanges
from processors.engine.events import (
    Action,
    Event,
    Outgoing,
    RecordRejected,
    RedriveRequested,
    RunRequested,
    StepFinished,
    TimerFired,
    Transition,
    dead_letter_id,
    output_id,
    timers,
)
from processors.engine.versions import version_of
from processors.engine.workflow import Workflow
from schemas.models import DeadLetter, JournalKind, RunState, RunStatus, StepState, StepStatus

# What callers import from here with the transition itself (defined in processors.engine.events).
__all__ = [
    "Action",
    "Event",
    "Outgoing",
    "RecordRejected",
    "RedriveRequested",
    "RunRequested",
    "StepFinished",
    "TimerFired",
    "Transition",
    "dead_letter_id",
    "input_digest",
    "output_id",
    "start",
    "timers",
    "transition",
]


def start(wf: Workflow, event: RunRequested) -> Transition:
    started = event.admitted_at_ms if event.admitted_at_ms is not None else event.at_ms
    empty = RunState(
        run_id=event.run_id,
        workflow=wf.name,
        status=RunStatus.RUNNING,
        input_json=canonical_json(event.input),
        seq=0,
        started_at_ms=started,
        updated_at_ms=started,
        steps=[StepState(name=s.name, status=StepStatus.PENDING) for s in wf.steps],
        received_at_ms=event.at_ms,
        version=version_of(wf),
    )
    b = RunChanges(wf, empty, started)
    b.journal(JournalKind.RUN_STARTED, detail=event.input)
    b.schedule_ready()
    if not wf.steps:
        b.finish_ok()
    return b.build("run started")


def transition(wf: Workflow, state: RunState | None, event: Event) -> Transition:
    """Apply ``event`` to the run ``state`` of workflow ``wf``."""
    if isinstance(event, RunRequested):
        if state is not None:
            return _resubmitted(wf, state, event)
        return start(wf, event)
    if state is None:
        return Transition(None, note="event for an unknown run ignored")
    if isinstance(event, TimerFired):
        return _timer(wf, state, event)
    if isinstance(event, RedriveRequested):
        return _redrive(wf, state, event)
    if isinstance(event, RecordRejected):
        return _rejected(wf, state, event)
    return _result(wf, state, event)


def input_digest(run_input: Any) -> str:
    """A short digest of a run input (canonical JSON): how a re-submission is compared and named."""
    return hashlib.sha256(canonical_json(run_input).encode()).hexdigest()[:16]


def _resubmitted(wf: Workflow, state: RunState, event: RunRequested) -> Transition:
    """The same input again is a duplicate (nothing to do); another input for the same run is a conflict.

    A conflict is journaled (INPUT_CONFLICT) and dead-lettered with the input it brought, once per distinct
    input; the run goes on with the input it started with.
    """
    if canonical_json(event.input) == state.input_json:
        return Transition(state, note="duplicate run request ignored")
    digest = input_digest(event.input)
    if digest in state.conflicts:
        return Transition(state, note="conflicting run request already recorded")
    b = RunChanges(wf, state, event.at_ms)
    b.conflicts.append(digest)
    letter_id = f"{state.run_id}/conflict/{digest}"
    differs = sorted(
        k
        for k in set(event.input) | set(json.loads(state.input_json))
        if event.input.get(k) != json.loads(state.input_json).get(k)
    )
    b.journal(JournalKind.INPUT_CONFLICT, detail={"dead_letter_id": letter_id, "digest": digest, "fields": differs})
    b.out.append(
        Outgoing(
            "dead_letter",
            letter_id,
            DeadLetter(
                dead_letter_id=letter_id,
                reason=f"a second input for run {state.run_id} differs from its first in {', '.join(differs)}: "
                "not applied (the run goes on with its first input)",
                error_type="ConflictingInput",
                source_topic="",
                source_partition=-1,
                source_offset=-1,
                run_id=state.run_id,
                payload=b"",
                at_ms=event.at_ms,
                kind="conflict",
                workflow=wf.name,
                input_json=canonical_json(event.input),
            ),
        )
    )
    return b.build(f"conflicting input {digest} recorded")


def _rejected(wf: Workflow, state: RunState, event: RecordRejected) -> Transition:
    """Fail the run on a record that could not be applied: its steps in flight are awaited, completed ones undone."""
    if state.status is not RunStatus.RUNNING:
        return Transition(state, note=f"rejected record for a {state.status.value} run: nothing more to stop")
    if event.step is not None:
        current = next((s for s in state.steps if s.name == event.step), None)
        if current is None or current.status is not StepStatus.SCHEDULED or current.attempt != event.attempt:
            return Transition(state, note="rejected record for an attempt the run does not wait for ignored")
    b = RunChanges(wf, state, event.at_ms)
    if event.step is not None:
        b.update(event.step, status=StepStatus.FAILED)
    b.failure_json = canonical_json(
        {
            "step": event.step or "",
            "error_type": event.error_type,
            "error_message": event.reason,
            "attempts": 0,
            "dead_letter_id": event.dead_letter_id,
        }
    )
    b.begin_compensation()
    return b.build(f"run failed on a rejected record: {event.error_type}")


def _result(wf: Workflow, state: RunState, event: StepFinished) -> Transition:
    result = event.result
    if not wf.has_step(result.step):
        return Transition(state, note=f"result for unknown step {result.step!r} ignored")
    current = next(s for s in state.steps if s.name == result.step)
    if result.action == "compensate":
        live = state.status is RunStatus.COMPENSATING
        expected = current.status is StepStatus.COMPENSATING and current.comp_attempt == result.attempt
    else:
        live = state.status in (RunStatus.RUNNING, RunStatus.COMPENSATING, RunStatus.PAUSED)
        expected = current.status is StepStatus.SCHEDULED and current.attempt == result.attempt
    if not live:
        return Transition(state, note="result for a stopped run ignored")
    if not expected:
        return Transition(state, note="duplicate or stale result ignored")
    b = RunChanges(wf, state, event.at_ms)
    note = b.succeeded(result) if result.error is None else b.failed(result, result.error)
    return b.build(note)


def _timer(wf: Workflow, state: RunState, event: TimerFired) -> Transition:
    if not wf.has_step(event.step):
        return Transition(state, note="timer for an unknown step ignored")
    current = next(s for s in state.steps if s.name == event.step)
    waits = (current.status is StepStatus.WAITING and current.attempt == event.attempt and event.action == "run") or (
        current.status is StepStatus.COMPENSATION_WAITING
        and current.comp_attempt == event.attempt
        and event.action == "compensate"
    )
    if not waits:
        return Transition(state, note="timer no longer waited for ignored")
    b = RunChanges(wf, state, event.at_ms)
    b.command(event.step, event.action, event.attempt + 1)
    return b.build(f"{event.step} attempt {event.attempt + 1} ({event.action}) fired")


def _redrive(wf: Workflow, state: RunState, event: RedriveRequested) -> Transition:
    if event.control.action == "compensate":
        if state.status is not RunStatus.PAUSED:  # twice is once: the first moved it on
            return Transition(state, note=f"compensate of a {state.status.value} run ignored")
        b = RunChanges(wf, state, event.at_ms)
        return b.build(b.compensate(event.control))
    if event.control.action == "rollback":
        if state.status is not RunStatus.COMPLETED:  # twice is once: the first moved it on
            return Transition(state, note=f"rollback of a {state.status.value} run ignored")
        b = RunChanges(wf, state, event.at_ms)
        return b.build(b.rollback(event.control))
    if event.control.action != "redrive":
        return Transition(state, note=f"unknown control action {event.control.action!r} ignored")
    if state.status not in (RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.PAUSED):
        return Transition(state, note=f"redrive of a {state.status.value} run ignored")
    b = RunChanges(wf, state, event.at_ms)
    note = b.redrive(event.control)
    if note is None:
        return Transition(state, note="redrive of a dead letter that is not the run's current one ignored")
    return b.build(note)
