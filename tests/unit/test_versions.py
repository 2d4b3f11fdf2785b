"""Workflow versions: what a run records, which version a run continues on, and what a blocked run keeps."""

from __future__ import annotations

import dataclasses

import pytest

from processors.engine.transition import RunRequested, StepFinished, TimerFired, transition
from processors.engine.versions import VersionConflict, Versions, resolve, version_of
from processors.engine.workflow import Workflow
from schemas.models import RunState, StepCommand, StepResult
from streams import blocked
from tests.versioned import PATCHED, V1, V2
from tests.workflows import SLOW

ORDER = {"order_id": "O1", "customer": "c", "amount": 1.0}


def test_a_declared_version_is_the_version_and_an_undeclared_one_is_the_declarations_fingerprint() -> None:
    assert version_of(V1) == "v1"
    assert version_of(SLOW).startswith("fp-")
    longer_timeout = dataclasses.replace(
        SLOW, steps=(dataclasses.replace(SLOW.steps[0], timeout_s=99), *SLOW.steps[1:])
    )
    assert version_of(longer_timeout) != version_of(SLOW), "a changed declaration is another version"


def test_the_newest_version_is_the_one_loaded_last_and_every_loaded_version_is_found() -> None:
    both = Versions([V1, V2])
    assert both["versioned"] is V2 and Versions([V2, V1])["versioned"] is V1
    assert both.version("versioned", "v1") is V1 and both.version("versioned", "v3") is None
    assert both.version("versioned", None) is V2, "a run recorded before versions continues on the newest"
    assert both.loaded("versioned") == ["v1", "v2"]
    assert resolve({"versioned": V2}, "versioned", "v1") is None, "a plain mapping never stands in for another version"
    assert resolve({"versioned": V2}, "versioned", "v2") is V2


def test_one_version_loaded_from_two_declarations_is_refused() -> None:
    with pytest.raises(VersionConflict):
        Versions([V1, dataclasses.replace(V1, steps=V1.steps[:1])])


def test_a_run_records_its_version_in_its_state_its_journal_and_its_commands() -> None:
    tr = transition(V1, None, RunRequested("order-O1", ORDER, 1000))
    assert tr.state is not None and tr.state.version == "v1"
    assert {getattr(o.record, "workflow_version", None) for o in tr.outgoing} == {"v1"}
    result = StepResult(
        command_id="order-O1/a/1",
        run_id="order-O1",
        workflow="versioned",
        step="a",
        attempt=1,
        output_json='{"n": 1}',
        error=None,
        started_at_ms=1001,
        finished_at_ms=1002,
        worker="w",
    )
    later = transition(V1, tr.state, StepFinished(result, 1002))
    assert later.state is not None and later.state.version == "v1"
    commands = [o.record for o in later.outgoing if isinstance(o.record, StepCommand)]
    assert {c.step for c in commands} == {"b", "c"} and {c.workflow_version for c in commands} == {"v1"}


def test_a_blocked_run_parks_results_and_controls_in_order_and_gives_them_back() -> None:
    state = transition(V1, None, RunRequested("order-O1", ORDER, 1000)).state
    assert state is not None
    result = StepResult(
        command_id="order-O1/a/1",
        run_id="order-O1",
        workflow="versioned",
        step="a",
        attempt=1,
        output_json="{}",
        error=None,
        started_at_ms=1,
        finished_at_ms=2,
        worker="w",
    )
    marked = blocked.park(state, None, "v1 not loaded")
    assert marked is not None and marked.blocked == "v1 not loaded" and not marked.parked
    assert blocked.park(marked, TimerFired("order-O1", "a", "run", 1, 5), "v1 not loaded") is None
    parked = blocked.park(marked, StepFinished(result, 3), "v1 not loaded")
    assert parked is not None and len(parked.parked) == 1
    (event,) = blocked.parked_events(parked)
    assert isinstance(event, StepFinished) and event.result == result and event.at_ms == 3
    assert blocked.unblocked(parked).blocked is None and not blocked.unblocked(parked).parked


def test_ids_the_previous_owner_wrote_travel_with_a_parked_run_so_its_resumer_writes_them_not_again() -> None:
    state = transition(V1, None, RunRequested("order-O2", ORDER, 1000)).state
    assert state is not None
    written = ["order-O2/3", "order-O2/4"]  # the take-over guard: journal events the killed owner wrote
    marked = blocked.park(state, None, "v1 not loaded", written)
    assert marked is not None and blocked.parked_guard(marked) == set(written)
    assert blocked.parked_events(marked) == [], "a guard entry is no event to apply"
    again = blocked.park(marked, None, "v1 not loaded", [*written, "order-O2/5"])
    assert again is not None and blocked.parked_guard(again) == {*written, "order-O2/5"}
    assert blocked.park(again, None, "v1 not loaded", written) is None, "nothing new: the state is unchanged"


def _drive(wf: Workflow, state: RunState) -> RunState:
    """Answer every command the run issues, in order, until it stops issuing any (a run of trivial steps)."""
    pending = []
    tr = transition(wf, None, RunRequested(state.run_id, ORDER, 1000)) if not state.steps else None
    if tr is not None:
        assert tr.state is not None
        state, pending = tr.state, [o.record for o in tr.outgoing if isinstance(o.record, StepCommand)]
    else:
        pending = [
            StepCommand(
                command_id=f"{state.run_id}/{s.name}/{s.attempt}",
                run_id=state.run_id,
                workflow=wf.name,
                step=s.name,
                attempt=s.attempt,
                input_json="{}",
                scheduled_at_ms=0,
                timeout_ms=1000,
            )
            for s in state.steps
            if s.status.value == "SCHEDULED"
        ]
    while pending:
        c = pending.pop(0)
        result = StepResult(
            command_id=c.command_id,
            run_id=c.run_id,
            workflow=c.workflow,
            step=c.step,
            attempt=c.attempt,
            output_json="{}",
            error=None,
            started_at_ms=2000,
            finished_at_ms=2000,
            worker="w",
        )
        tr = transition(wf, state, StepFinished(result, 2000))
        assert tr.state is not None
        state = tr.state
        pending += [o.record for o in tr.outgoing if isinstance(o.record, StepCommand)]
    return state


def test_a_patched_step_runs_for_new_runs_and_is_skipped_by_runs_recorded_on_the_version_before_it() -> None:
    assert [s.name for s in PATCHED.steps_for("v1")] == ["a", "b", "c", "d"]
    assert [s.name for s in PATCHED.steps_for("v2")] == ["a", "b", "c", "d", "e"]
    assert Versions([PATCHED]).version("versioned", "v1") is PATCHED, "the patched declaration finishes v1 runs"
    assert resolve({"versioned": PATCHED}, "versioned", "v1") is PATCHED

    started_on_v1 = transition(V1, None, RunRequested("order-O1", ORDER, 1000)).state
    assert started_on_v1 is not None
    old = _drive(PATCHED, started_on_v1)  # V1's first commands answered by the patched code
    assert old.status.value == "COMPLETED" and [s.name for s in old.steps] == ["a", "b", "c", "d"]
    assert old.version == "v1"

    new = _drive(
        PATCHED,
        RunState(
            run_id="order-O2",
            workflow="versioned",
            status="RUNNING",
            input_json="{}",
            seq=0,
            started_at_ms=0,
            updated_at_ms=0,
            steps=[],
        ),
    )
    assert new.status.value == "COMPLETED" and [s.name for s in new.steps] == ["a", "b", "c", "d", "e"]
    assert new.version == "v2"


def test_a_patch_must_name_a_version_the_workflow_has() -> None:
    with pytest.raises(ValueError, match="since"):
        dataclasses.replace(V1, steps=(*V1.steps, dataclasses.replace(V1.steps[0], name="z", since="v9")))
