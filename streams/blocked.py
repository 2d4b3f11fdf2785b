"""Runs blocked on a version: what reaches a run whose workflow version its orchestrator has not loaded.

A run finishes on the version it started on (:mod:`processors.engine.versions`).
The orchestrator that owns its partition may lack that version (a worker
started without it, a version removed too early). Such a run is neither
failed nor advanced on another version: the records that reach it (step
results, redrive requests) are *parked* in its state, in arrival order, and
the state says why it waits (``blocked``); an orchestrator taking a
partition over marks its runs of a version it lacks blocked at once, so a run
waiting on a step (whose command no executor may answer) is seen to wait too.
The state goes through the
changelog like any other, so the parked records survive a crash or a
partition moving to another worker. Whichever orchestrator owns the partition
with the version loaded (a restart with it, or a take-over by a worker that
has it) applies them in order and the run goes on (:func:`parked_events`).

A fired retry timer is not parked: timers are derived from the state, and
re-armed when the run resumes (an overdue one fires at once).
"""

from __future__ import annotations

from processors.engine.transition import Event, RedriveRequested, StepFinished, TimerFired
from schemas import from_bytes, to_bytes
from schemas.models import ParkedEvent, RunControl, RunState, StepResult


def park(state: RunState, event: Event | None, reason: str) -> RunState | None:
    """``state`` blocked for ``reason`` with ``event`` (if any) parked; None when nothing changes.

    No event: the run is found on a take-over, waiting on a step whose command no executor of its version
    may answer yet; it is marked blocked so that it is seen to wait.
    """
    parked = list(state.parked)
    if isinstance(event, StepFinished):
        parked.append(ParkedEvent(kind="result", value=to_bytes(event.result), at_ms=event.at_ms))
    elif isinstance(event, RedriveRequested):
        parked.append(ParkedEvent(kind="control", value=to_bytes(event.control), at_ms=event.at_ms))
    elif event is not None and not isinstance(event, TimerFired):
        return None  # a re-submitted input or a rejected record: nothing a resumed run needs
    if state.blocked == reason and len(parked) == len(state.parked):
        return None
    return state.model_copy(update={"blocked": reason, "parked": parked})


def unblocked(state: RunState) -> RunState:
    """``state`` with nothing parked and no longer blocked (its parked records are about to be applied)."""
    return state.model_copy(update={"blocked": None, "parked": []})


def parked_events(state: RunState) -> list[Event]:
    """The records parked in ``state``, as the events they were, in arrival order."""
    events: list[Event] = []
    for p in state.parked:
        if p.kind == "result":
            events.append(StepFinished(from_bytes(p.value, StepResult), p.at_ms))
        elif p.kind == "control":
            events.append(RedriveRequested(from_bytes(p.value, RunControl), p.at_ms))
    return events


def reason(workflow: str, version: str, loaded: list[str], worker: str) -> str:
    """Why a run waits, as its state and ``durable runs list --blocked`` say it."""
    have = ", ".join(loaded) or "none"
    return f"version {version} of {workflow} is not loaded by worker {worker} (it has: {have})"
