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

import logging
from collections.abc import Callable, Collection

from processors.engine.transition import Event, RedriveRequested, StepFinished, TimerFired
from processors.engine.versions import Versions
from processors.engine.workflow import Workflow
from schemas import from_bytes, to_bytes
from schemas.models import ParkedEvent, RunControl, RunState, StepResult
from streams.checkpoint import Checkpoint
from streams.recovery import TIMER_SRC
from streams.runtable import RunTable
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

GUARD = "guard"  # a parked entry holding ids already written, not an event

# Applies one event to a run in a checkpoint: (checkpoint, src, partition, workflow, run id, event).
Advance = Callable[[Checkpoint, str, int, Workflow, str, Event], None]


def park(state: RunState, event: Event | None, reason: str, guarded: Collection[str] = ()) -> RunState | None:
    """``state`` blocked for ``reason`` with ``event`` (if any) parked; None when nothing changes.

    No event: the run is found on a take-over, waiting on a step whose command no executor of its version
    may answer yet; it is marked blocked so that it is seen to wait.

    ``guarded``: ids of the run's records the previous owner wrote for inputs it had not committed
    (the take-over's guard). Parking commits those inputs here, so the guard would be lost with this
    owner; it is parked too, and restored by the owner that resumes the run, which would otherwise write
    those records a second time.
    """
    parked = list(state.parked)
    known = {i for p in parked if p.kind == GUARD for i in p.value.decode().split("\n")}
    new = sorted(set(guarded) - known)
    if new:
        parked.append(ParkedEvent(kind=GUARD, value="\n".join(new).encode(), at_ms=0))
    if isinstance(event, StepFinished):
        parked.append(ParkedEvent(kind="result", value=to_bytes(event.result), at_ms=event.at_ms))
    elif isinstance(event, RedriveRequested):
        parked.append(ParkedEvent(kind="control", value=to_bytes(event.control), at_ms=event.at_ms))
    elif event is not None and not isinstance(event, TimerFired):
        return None  # a re-submitted input or a rejected record: nothing a resumed run needs
    if state.blocked == reason and len(parked) == len(state.parked):
        return None
    return state.model_copy(update={"blocked": reason, "parked": parked})


def parked_guard(state: RunState) -> set[str]:
    """The ids of records already written for what is parked in ``state`` (see :func:`park`)."""
    return {i for p in state.parked if p.kind == GUARD for i in p.value.decode().split("\n") if i}


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


class VersionGate:
    """An orchestrator's side of versions: which loaded version a run goes on with, and blocked runs."""

    def __init__(self, versions: Versions, worker_name: str, telemetry: Telemetry | None) -> None:
        self.versions = versions
        self.worker_name = worker_name
        self.telemetry = telemetry
        self.recheck: list[tuple[int, str]] = []  # runs to block or resume, found on a take-over

    def runs_on(self, state: RunState) -> Workflow | None:
        """The loaded version ``state``'s run continues on (a run recorded before versions: the newest)."""
        return self.versions.version(state.workflow, state.version)

    def park(
        self, checkpoint: Checkpoint, p: int, state: RunState, ev: Event | None, guard: Collection[str] = ()
    ) -> None:
        """Block the run (if it is not yet) and keep ``ev`` in its state, to apply once its version is loaded.

        ``guard``: the partition's take-over guard; the run's ids in it are kept with the run.
        """
        why = reason(state.workflow, state.version or "", self.versions.loaded(state.workflow), self.worker_name)
        prefix = f"{state.run_id}/"
        parked = park(state, ev, why, [i for i in guard if i.startswith(prefix)])
        if parked is None:
            return
        if state.blocked is None:
            log.warning("run %s waits: %s", state.run_id, why)
            if self.telemetry is not None:
                self.telemetry.blocked.add(1, {"role": "orchestrator", "workflow": state.workflow})
        checkpoint.states[(p, state.run_id)] = parked
        checkpoint.encoded[(p, state.run_id)] = to_bytes(parked)

    def taken_over(self, table: RunTable, p: int) -> None:
        """Note the runs of partition ``p`` to block (version not loaded here) or resume (blocked, version here)."""
        for run_id in sorted(table.live(p)):
            state = table.get(p, run_id)
            if state is not None and bool(state.blocked) == (self.runs_on(state) is not None):
                self.recheck.append((p, run_id))

    def block_or_resume(
        self,
        checkpoint: Checkpoint,
        table: RunTable,
        owned: Collection[int],
        advance: Advance,
        guard: dict[int, set[str]],
    ) -> None:
        """Block the runs noted whose version is not loaded here; resume the blocked ones whose is.

        A resumed run's parked records are applied (by ``advance``) in the order they arrived.
        """
        recheck, self.recheck = self.recheck, []
        for p, run_id in recheck:
            state = table.get(p, run_id)
            if p not in owned or state is None:
                continue
            wf = self.runs_on(state)
            if wf is None:
                self.park(checkpoint, p, state, None, guard.get(p, ()))
                continue
            if not state.blocked:
                continue
            log.info(
                "run %s resumes on %s version %s: %d parked record(s)",
                run_id,
                wf.name,
                state.version,
                len(state.parked),
            )
            if self.telemetry is not None:
                self.telemetry.blocked.add(-1, {"role": "orchestrator", "workflow": state.workflow})
            guard.setdefault(p, set()).update(parked_guard(state))  # written by an owner before the block
            clear = unblocked(state)
            checkpoint.states[(p, run_id)] = clear
            checkpoint.encoded[(p, run_id)] = to_bytes(clear)
            for i, ev in enumerate(parked_events(state)):
                advance(checkpoint, f"{TIMER_SRC}resume/{run_id}/{i}", p, wf, run_id, ev)
