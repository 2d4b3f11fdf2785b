"""One transition's changes to a run: what each outcome does to its steps, and the records it writes.

The transition (:mod:`processors.engine.transition`) decides which change an event makes; :class:`RunChanges`
makes it over an immutable :class:`RunState` and builds the new state with its outgoing records. Pure like
the transition: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from processors.engine import chain
from processors.engine.canonical import canonical_json
from processors.engine.events import Action, Outgoing, Transition, dead_letter_id, output_id
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
    StepStatus,
)

_IN_FLIGHT = {StepStatus.SCHEDULED, StepStatus.COMPENSATING, StepStatus.COMPENSATION_WAITING}


class RunChanges:
    """Accumulates one transition's changes over an immutable RunState; ``build`` gives the Transition."""

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
