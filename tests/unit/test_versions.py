"""Workflow versions: what a run records, which version a run continues on, and what a blocked run keeps."""

from __future__ import annotations

import dataclasses

import pytest

from processors.engine.transition import RunRequested, StepFinished, TimerFired, transition
from processors.engine.versions import VersionConflict, Versions, resolve, version_of
from schemas.models import StepCommand, StepResult
from streams import blocked
from tests.versioned import V1, V2
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
