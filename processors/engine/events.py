"""What the transition takes and gives: the events that reach a run, the records it asks to write, their ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.models import DeadLetter, JournalEvent, RunControl, RunState, StepCommand, StepResult, StepStatus

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
