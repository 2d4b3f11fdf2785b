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

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from processors.engine import chain
from processors.engine.canonical import canonical_json
from processors.engine.versions import version_of
from processors.engine.workflow import RunFailure, RunPaused, RunResult, Workflow
from schemas.models import (
    AttemptFailure,
    DeadLetter,
    JournalEvent,
    JournalKind,
    RunControl,
    RunState,
    RunStatus,
    StepCommand,
    StepError,
    StepResult,
    StepState,
    StepStatus,
)

Action = Literal["run", "compensate"]


@dataclass(frozen=True)
class RunRequested:
    """A workflow input arrived: start a run unless it exists.

    ``at_ms`` is when the input was written; ``admitted_at_ms``, when the orchestrator admitted it (runs wait for
    admission in a burst). A run starts, and its latency budget runs, from its admission.
    """

    run_id: str
    input: dict[str, Any]
    at_ms: int
    admitted_at_ms: int | None = None


@dataclass(frozen=True)
class StepFinished:
    """A step attempt (or a compensation attempt) produced a result: an output or an error."""

    result: StepResult
    at_ms: int


@dataclass(frozen=True)
class TimerFired:
    """A waiting retry fell due. Its time is its due time, so firing late or twice changes nothing."""

    run_id: str
    step: str
    action: Action
    attempt: int
    due_at_ms: int

    @property
    def at_ms(self) -> int:
        return self.due_at_ms


@dataclass(frozen=True)
class RedriveRequested:
    """An operator asked to resume a stopped run from one of its dead letters."""

    control: RunControl
    at_ms: int


@dataclass(frozen=True)
class RecordRejected:
    """A record addressed to the run could not be applied (the runtime dead-lettered it): the run fails, visibly.

    ``step``/``attempt``, when the record was a step's result: only a result for the attempt the run waits
    for fails it (anything else is stale or stray, and changes nothing).
    """

    run_id: str
    reason: str
    error_type: str
    dead_letter_id: str
    at_ms: int
    step: str | None = None
    attempt: int | None = None


Event = RunRequested | StepFinished | TimerFired | RedriveRequested | RecordRejected


@dataclass(frozen=True)
class Outgoing:
    """A record the transition asks the runtime to write.

    ``kind`` says where: a step command, a journal event, a dead letter, or
    the workflow's output (its ``record`` is a plain dict for the workflow's
    output schema).
    """

    kind: Literal["command", "journal", "output", "dead_letter"]
    message_id: str
    record: StepCommand | JournalEvent | DeadLetter | dict[str, Any]
    # With an output: the hash of the run's last journal event before it (processors.engine.chain), to sign.
    chain_head: str | None = None


@dataclass(frozen=True)
class Transition:
    state: RunState | None
    outgoing: list[Outgoing] = field(default_factory=list)
    applied: bool = False
    note: str = ""


def output_id(run_id: str, generation: int = 0) -> str:
    """The id of a run's output record (e.g. its decision): one per run and redrive generation."""
    name = f"durable:output:{run_id}" if generation == 0 else f"durable:output:{run_id}:{generation}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def dead_letter_id(run_id: str, step: str, action: str, attempt: int) -> str:
    """The id of the dead letter of a step (or compensation) whose last attempt was ``attempt``."""
    return f"{run_id}/{step}/{action}/{attempt}"


def timers(state: RunState) -> list[TimerFired]:
    """The retries of ``state`` that wait for their due time, as the events that will fire them."""
    fired = []
    for s in state.steps:
        if s.due_at_ms is None:
            continue
        if s.status is StepStatus.WAITING:
            fired.append(TimerFired(state.run_id, s.name, "run", s.attempt, s.due_at_ms))
        elif s.status is StepStatus.COMPENSATION_WAITING:
            fired.append(TimerFired(state.run_id, s.name, "compensate", s.comp_attempt, s.due_at_ms))
    return fired


_IN_FLIGHT = {StepStatus.SCHEDULED, StepStatus.COMPENSATING, StepStatus.COMPENSATION_WAITING}


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
        self.generation = state.generation
        self.failure_json = state.failure_json
        self.conflicts = list(state.conflicts)
        self.received_at_ms = state.received_at_ms
        self.version = state.version
        self.specs = wf.steps_for(state.version)  # a run on an older version skips steps patched in since
        self.chain_head = state.chain_head
        self.steps = {s.name: s for s in state.steps}
        self.out: list[Outgoing] = []

    # -- records -----------------------------------------------------------------

    def journal(
        self,
        kind: JournalKind,
        step: str | None = None,
        attempt: int | None = None,
        detail: Any = None,
        recorded: str | None = None,
        settings: str | None = None,
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
            recorded_json=recorded,
            settings_json=settings,
            workflow_version=self.version,
            prev_hash=self.chain_head,
        )
        self.chain_head = chain.hash_event(event)
        self.out.append(Outgoing("journal", event.event_id, event))

    def update(self, name: str, **changes: Any) -> None:
        self.steps[name] = self.steps[name].model_copy(update=changes)

    def outputs(self) -> dict[str, Any]:
        return {
            name: json.loads(s.output_json)
            for name, s in self.steps.items()
            if s.status is StepStatus.SUCCEEDED and s.output_json is not None
        }

    def step_input(self, name: str) -> dict[str, Any]:
        spec = self.wf.step(name)
        deps = {}
        for dep in spec.after:
            raw = self.steps[dep].output_json
            deps[dep] = json.loads(raw) if raw is not None else None
        return {"input": json.loads(self.input_json), "deps": deps, "run": {"started_at_ms": self.started_at_ms}}

    # -- scheduling ------------------------------------------------------------------

    def command(self, name: str, action: Action, attempt: int) -> None:
        """Issue attempt ``attempt`` of step ``name`` (or of its compensation)."""
        spec = self.wf.step(name)
        step_input = self.step_input(name)
        if action == "compensate":
            step_input["output"] = json.loads(self.steps[name].output_json or "{}")
            self.update(name, status=StepStatus.COMPENSATING, comp_attempt=attempt, due_at_ms=None)
            self.journal(JournalKind.COMPENSATION_SCHEDULED, name, attempt, step_input)
            command_id = f"{self.run_id}/{name}/{attempt}/compensate"
        else:
            self.update(name, status=StepStatus.SCHEDULED, attempt=attempt, due_at_ms=None)
            self.journal(JournalKind.STEP_SCHEDULED, name, attempt, step_input)
            command_id = f"{self.run_id}/{name}/{attempt}"
        command = StepCommand(
            command_id=command_id,
            run_id=self.run_id,
            workflow=self.wf.name,
            step=name,
            attempt=attempt,
            input_json=canonical_json(step_input),
            scheduled_at_ms=self.at_ms,
            timeout_ms=int(spec.timeout_s * 1000),
            action=action,
            workflow_version=self.version,
        )
        self.out.append(Outgoing("command", command.command_id, command))

    def schedule_ready(self) -> None:
        for spec in self.specs:
            state = self.steps[spec.name]
            if state.status is StepStatus.PENDING and all(
                self.steps[d].status is StepStatus.SUCCEEDED for d in spec.after
            ):
                self.command(spec.name, "run", state.attempt + 1)

    # -- outcomes ----------------------------------------------------------------------

    def succeeded(self, result: StepResult) -> str:
        name = result.step
        output = json.loads(result.output_json or "{}")
        if result.action == "compensate":
            self.update(name, status=StepStatus.COMPENSATED, failures=[])
            self.journal(
                JournalKind.COMPENSATION_SUCCEEDED, name, result.attempt, output, result.recorded_json, result.settings_json
            )
            self.advance_compensation()
            return f"{name} compensated"
        self.journal(JournalKind.STEP_SUCCEEDED, name, result.attempt, output, result.recorded_json, result.settings_json)
        self.update(
            name,
            status=StepStatus.SUCCEEDED,
            output_json=canonical_json(output),
            error_json=None,
            completed_seq=self.seq,
            failures=[],
        )
        if self.status is RunStatus.COMPENSATING:
            self.advance_compensation()  # finished while the run was draining: undone with the rest
        elif self.status is RunStatus.PAUSED:
            pass  # recorded; the steps after it wait for the redrive that resumes the run
        elif all(s.status is StepStatus.SUCCEEDED for s in self.steps.values()):
            self.finish_ok()
        else:
            self.schedule_ready()
        return f"{name} succeeded"

    def failed(self, result: StepResult, error: StepError) -> str:
        name, attempt = result.step, result.attempt
        action: Action = "compensate" if result.action == "compensate" else "run"
        policy = self.wf.step(name).policy(action)
        failure = AttemptFailure(
            action=action,
            attempt=attempt,
            type=error.type,
            message=error.message,
            traceback=error.traceback,
            retryable=error.retryable,
            started_at_ms=result.started_at_ms,
            finished_at_ms=result.finished_at_ms,
            worker=result.worker,
            recorded_json=result.recorded_json,
        )
        failures = [*self.steps[name].failures, failure]
        nth = sum(1 for f in failures if f.action == action)
        self.update(name, failures=failures, error_json=canonical_json(error.model_dump(mode="json")))
        detail = {**error.model_dump(mode="json"), "nth": nth, "max_attempts": policy.max_attempts}
        kind = JournalKind.COMPENSATION_FAILED if action == "compensate" else JournalKind.STEP_FAILED
        self.journal(kind, name, attempt, detail, result.recorded_json, result.settings_json)

        if action == "run" and self.status is RunStatus.COMPENSATING:
            # A sibling failed for good meanwhile: no more attempts for this one.
            self.update(name, status=StepStatus.CANCELLED)
            self.journal(JournalKind.STEP_CANCELLED, name, attempt, {"reason": "run is compensating"})
            self.advance_compensation()
            return f"{name} failed while the run compensates"

        if error.retryable and nth < policy.max_attempts:
            backoff = policy.backoff_ms(self.run_id, name, attempt, nth)
            if backoff == 0:
                self.command(name, action, attempt + 1)
                return f"{name} failed, attempt {attempt + 1} scheduled"
            due = self.at_ms + backoff
            waiting = StepStatus.COMPENSATION_WAITING if action == "compensate" else StepStatus.WAITING
            self.update(name, status=waiting, due_at_ms=due)
            kind = JournalKind.COMPENSATION_RETRY_WAITING if action == "compensate" else JournalKind.STEP_RETRY_WAITING
            self.journal(kind, name, attempt, {"backoff_ms": backoff, "due_at_ms": due, "next_attempt": attempt + 1})
            return f"{name} failed, attempt {attempt + 1} due in {backoff} ms"

        letter = self.dead_letter(name, action, attempt, failures, error)
        if action == "compensate":
            self.update(name, status=StepStatus.COMPENSATION_FAILED)
            self.journal(JournalKind.COMPENSATION_DEAD_LETTERED, name, attempt, {"dead_letter_id": letter})
            self.advance_compensation()
            return f"compensation of {name} dead-lettered"
        self.update(name, status=StepStatus.FAILED)
        self.journal(JournalKind.STEP_DEAD_LETTERED, name, attempt, {"dead_letter_id": letter})
        if self.status is RunStatus.PAUSED and policy.on_exhausted == "pause":
            # Paused already: the first letter's redrive resumes every failed step; nothing is undone.
            return f"{name} dead-lettered, run stays paused"
        self.failure_json = canonical_json(
            {
                "step": name,
                "error_type": error.type,
                "error_message": error.message,
                "attempts": nth,
                "dead_letter_id": letter,
            }
        )
        if policy.on_exhausted == "pause":
            self.pause(name, attempt)
            return f"{name} dead-lettered, run paused"
        self.begin_compensation()
        return f"{name} dead-lettered, run compensating"

    def dead_letter(
        self, name: str, action: Action, attempt: int, failures: list[AttemptFailure], error: StepError
    ) -> str:
        letter_id = dead_letter_id(self.run_id, name, action, attempt)
        attempts = [f.model_dump(mode="json") for f in failures if f.action == action]
        why = "is not retryable" if not error.retryable else f"exhausted {len(attempts)} attempt(s)"
        what = f"compensation of {name}" if action == "compensate" else f"step {name}"
        step_input = self.step_input(name)
        if action == "compensate":
            step_input["output"] = json.loads(self.steps[name].output_json or "{}")
        letter = DeadLetter(
            dead_letter_id=letter_id,
            reason=f"{what} {why}: {error.type}: {error.message}"[:2000],
            error_type=error.type,
            source_topic="",  # the runtime names the commands topic
            source_partition=-1,
            source_offset=-1,
            run_id=self.run_id,
            step=name,
            payload=b"",
            at_ms=self.at_ms,
            kind="compensation" if action == "compensate" else "step",
            workflow=self.wf.name,
            attempt=attempt,
            input_json=canonical_json(step_input),
            attempts_json=canonical_json(attempts),
        )
        self.out.append(Outgoing("dead_letter", letter_id, letter))
        return letter_id

    # -- compensation ------------------------------------------------------------------

    def begin_compensation(self) -> None:
        self.status = RunStatus.COMPENSATING
        self.journal(JournalKind.RUN_COMPENSATING, detail=json.loads(self.failure_json or "{}"))
        for name, s in self.steps.items():
            if s.status is StepStatus.WAITING:
                self.update(name, status=StepStatus.CANCELLED, due_at_ms=None)
                self.journal(JournalKind.STEP_CANCELLED, name, s.attempt, {"reason": "run is compensating"})
        self.advance_compensation()

    def advance_compensation(self) -> None:
        """Undo the newest completed step not yet undone; finish when none is left and none is in flight."""
        if any(s.status in _IN_FLIGHT for s in self.steps.values()):
            return
        todo = [
            s
            for s in self.steps.values()
            if s.status is StepStatus.SUCCEEDED and self.wf.step(s.name).compensate is not None
        ]
        if todo:
            newest = max(todo, key=lambda s: s.completed_seq or 0)
            self.command(newest.name, "compensate", newest.comp_attempt + 1)
            return
        self.finish_failed()

    # -- endings -------------------------------------------------------------------------

    def pause(self, name: str, attempt: int) -> None:
        """Stop without undoing anything; the workflow's ``on_pause`` (if any) says so downstream meanwhile."""
        self.status = RunStatus.PAUSED
        failure = json.loads(self.failure_json or "{}")
        oid = output_id(self.run_id, self.generation)
        info = RunPaused(
            run_id=self.run_id,
            input=json.loads(self.input_json),
            step=name,
            error_type=failure.get("error_type", ""),
            error_message=failure.get("error_message", ""),
            attempts=failure.get("attempts", 0),
            outputs=self.outputs(),
            dead_letter_id=failure.get("dead_letter_id", ""),
            at_ms=self.at_ms,
            output_id=oid,
            generation=self.generation,
        )
        result: dict[str, Any] | None = None
        detail = dict(failure)
        if self.wf.on_pause is not None:
            try:
                result = self.wf.on_pause(info)
            except Exception as exc:  # no output while paused; the run still pauses, and says why
                detail["on_pause_error"] = f"{type(exc).__name__}: {exc}"[:2000]
            else:
                detail["output"] = result
        self.journal(JournalKind.RUN_PAUSED, name, attempt, detail)
        if result is not None:
            self.out.append(Outgoing("output", oid, result, self.chain_head))

    def finish_ok(self) -> None:
        oid = output_id(self.run_id, self.generation)
        run = RunResult(self.run_id, json.loads(self.input_json), self.outputs(), self.at_ms, oid, self.generation)
        try:
            result = self.wf.result(run)
        except Exception as exc:  # the workflow cannot build its output from these step outputs: the run fails
            self.failure_json = canonical_json(
                {
                    "step": "",
                    "error_type": type(exc).__name__,
                    "error_message": f"the workflow's result failed: {exc}"[:2000],
                    "attempts": 0,
                    "dead_letter_id": "",
                }
            )
            self.begin_compensation()
            return
        self.status = RunStatus.COMPLETED
        self.journal(JournalKind.RUN_COMPLETED, detail=result)
        self.out.append(Outgoing("output", oid, result, self.chain_head))

    def finish_failed(self) -> None:
        failure = json.loads(self.failure_json or "{}")
        by_completion = sorted(self.steps.values(), key=lambda s: -(s.completed_seq or 0))
        compensated = tuple(s.name for s in by_completion if s.status is StepStatus.COMPENSATED)
        comp_failed = tuple(s.name for s in by_completion if s.status is StepStatus.COMPENSATION_FAILED)
        rolled_back = bool(failure.get("rollback"))
        undone = compensated or rolled_back  # a rollback with nothing to undo still retracts its decision
        outcome: Literal["COMPENSATED", "FAILED"] = "COMPENSATED" if undone and not comp_failed else "FAILED"
        info = RunFailure(
            run_id=self.run_id,
            input=json.loads(self.input_json),
            step=failure.get("step", ""),
            error_type=failure.get("error_type", ""),
            error_message=failure.get("error_message", ""),
            attempts=failure.get("attempts", 0),
            outcome=outcome,
            compensated=compensated,
            compensation_failed=comp_failed,
            outputs={
                s.name: json.loads(s.output_json)
                for s in self.steps.values()
                if s.output_json is not None
                and (s.status is StepStatus.SUCCEEDED or s.name in compensated + comp_failed)
            },
            dead_letter_id=failure.get("dead_letter_id", ""),
            at_ms=self.at_ms,
            output_id=output_id(self.run_id, self.generation),
            generation=self.generation,
            retracted_by=failure.get("requested_by", "") if rolled_back else None,
            retract_reason=failure.get("reason", "") if rolled_back else "",
        )
        try:
            result: dict[str, Any] | None = self.wf.on_failure(info)
        except Exception as exc:  # no output can be built: the run still ends, visibly, with why
            result, outcome = None, "FAILED"
            why = f"{info.reason}; the workflow's on_failure failed too: {type(exc).__name__}: {exc}"[:2000]
            info = dataclasses.replace(info, error_message=why, outcome="FAILED")
        self.status = RunStatus.COMPENSATED if outcome == "COMPENSATED" else RunStatus.FAILED
        kind = JournalKind.RUN_COMPENSATED if outcome == "COMPENSATED" else JournalKind.RUN_FAILED
        self.journal(kind, detail={"reason": info.reason, "outcome": outcome, "output": result})
        if result is not None:
            self.out.append(Outgoing("output", info.output_id, result, self.chain_head))

    # -- redrive ---------------------------------------------------------------------------

    def redrive(self, control: RunControl) -> str | None:
        """Resume at the dead-lettered step or compensation with a fresh budget; None if it does not apply."""
        letter = control.dead_letter_id or ""
        failure = json.loads(self.failure_json or "{}")
        if failure.get("dead_letter_id") == letter:
            self.generation += 1
            self.status = RunStatus.RUNNING
            self.failure_json = None
            # Steps undone or never finished run again (attempt numbers go on, so ids stay unique); a paused
            # run's steps still in flight or waiting for a retry go on as they were.
            for name, s in self.steps.items():
                if s.status not in (StepStatus.SUCCEEDED, StepStatus.SCHEDULED, StepStatus.WAITING):
                    self.update(name, status=StepStatus.PENDING, failures=[], due_at_ms=None, error_json=None)
            self.journal(JournalKind.RUN_REDRIVEN, failure.get("step"), None, self._redrive_detail(control))
            self.schedule_ready()
            return f"redriven from {letter}"
        for name, s in self.steps.items():
            if (
                s.status is StepStatus.COMPENSATION_FAILED
                and dead_letter_id(self.run_id, name, "compensate", s.comp_attempt) == letter
            ):
                self.generation += 1
                self.status = RunStatus.COMPENSATING
                self.update(name, status=StepStatus.SUCCEEDED, failures=[])
                self.journal(JournalKind.RUN_REDRIVEN, name, None, self._redrive_detail(control))
                self.command(name, "compensate", s.comp_attempt + 1)
                return f"compensation of {name} redriven from {letter}"
        return None

    def compensate(self, control: RunControl) -> str:
        """An operator's word: undo a PAUSED run's completed steps, newest first, as if its step had compensated.

        A new generation, so the output that ends the run has an id of its own beside the one it wrote on pausing.
        """
        self.generation += 1
        failure = json.loads(self.failure_json or "{}")
        self.failure_json = canonical_json(
            {
                **failure,
                "compensated_by": control.requested_by,
                "control_id": control.control_id,
                "reason": control.reason or "",
            }
        )
        self.begin_compensation()
        return f"compensating on {control.requested_by or 'an operator'}'s word"

    def rollback(self, control: RunControl) -> str:
        """An operator's word: undo a COMPLETED run's steps, newest first; its new output retracts the decision.

        A new generation, so the retracting output has an id of its own beside the decision it retracts.
        """
        self.generation += 1
        self.failure_json = canonical_json(
            {
                "step": "",
                "rollback": True,
                "requested_by": control.requested_by,
                "control_id": control.control_id,
                "reason": control.reason or "",
                "generation": self.generation,
            }
        )
        self.begin_compensation()
        return f"rolling back on {control.requested_by or 'an operator'}'s word"

    def _redrive_detail(self, control: RunControl) -> dict[str, Any]:
        return {
            "dead_letter_id": control.dead_letter_id,
            "control_id": control.control_id,
            "generation": self.generation,
            "requested_by": control.requested_by,
        }

    def build(self, note: str) -> Transition:
        state = RunState(
            run_id=self.run_id,
            workflow=self.wf.name,
            status=self.status,
            input_json=self.input_json,
            seq=self.seq,
            started_at_ms=self.started_at_ms,
            updated_at_ms=self.at_ms,
            steps=[self.steps[s.name] for s in self.specs],
            generation=self.generation,
            failure_json=self.failure_json,
            conflicts=self.conflicts,
            received_at_ms=self.received_at_ms,
            version=self.version,
            chain_head=self.chain_head,
        )
        return Transition(state, self.out, applied=True, note=note)


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
    b = _Builder(wf, empty, started)
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
    b = _Builder(wf, state, event.at_ms)
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
    b = _Builder(wf, state, event.at_ms)
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
    b = _Builder(wf, state, event.at_ms)
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
    b = _Builder(wf, state, event.at_ms)
    b.command(event.step, event.action, event.attempt + 1)
    return b.build(f"{event.step} attempt {event.attempt + 1} ({event.action}) fired")


def _redrive(wf: Workflow, state: RunState, event: RedriveRequested) -> Transition:
    if event.control.action == "compensate":
        if state.status is not RunStatus.PAUSED:  # twice is once: the first moved it on
            return Transition(state, note=f"compensate of a {state.status.value} run ignored")
        b = _Builder(wf, state, event.at_ms)
        return b.build(b.compensate(event.control))
    if event.control.action == "rollback":
        if state.status is not RunStatus.COMPLETED:  # twice is once: the first moved it on
            return Transition(state, note=f"rollback of a {state.status.value} run ignored")
        b = _Builder(wf, state, event.at_ms)
        return b.build(b.rollback(event.control))
    if event.control.action != "redrive":
        return Transition(state, note=f"unknown control action {event.control.action!r} ignored")
    if state.status not in (RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.PAUSED):
        return Transition(state, note=f"redrive of a {state.status.value} run ignored")
    b = _Builder(wf, state, event.at_ms)
    note = b.redrive(event.control)
    if note is None:
        return Transition(state, note="redrive of a dead letter that is not the run's current one ignored")
    return b.build(note)
