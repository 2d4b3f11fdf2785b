"""Rollback in the pure transition: a COMPLETED run undone on an operator's word, once, with a new output."""

from __future__ import annotations

import json
from typing import Any

from processors.engine import chain
from processors.engine.transition import RedriveRequested, output_id, transition
from schemas.models import JournalKind, RunControl, RunState, RunStatus
from tests.unit import test_saga as saga
from tests.unit import test_transition as diamond


def rollback(run_id: str, workflow: str, at_ms: int = 90_000) -> RedriveRequested:
    control = RunControl(
        control_id=f"rollback:{run_id}",
        run_id=run_id,
        workflow=workflow,
        action="rollback",
        requested_at_ms=at_ms,
        requested_by="ops",
        reason="claim withdrawn",
    )
    return RedriveRequested(control, at_ms)


def completed_saga() -> RunState:
    state, _ = saga.drive(
        [
            saga.RunRequested(saga.RUN, {"order": 1}, at_ms=1000),
            saga.result("reserve", 1, 2000),
            saga.result("charge", 1, 3000),
            saga.result("audit", 1, 3500),
            saga.result("notify", 1, 4000),
        ]
    )
    assert state.status is RunStatus.COMPLETED
    return state


def test_rollback_undoes_a_completed_run_newest_first_and_ends_with_a_retracting_output() -> None:
    state, ts = saga.drive([rollback(saga.RUN, saga.WF.name)], completed_saga())
    assert state.status is RunStatus.COMPENSATING and state.generation == 1
    began = next(o.record for o in ts[0].outgoing if o.kind == "journal")
    assert began.kind is JournalKind.RUN_COMPENSATING
    detail: dict[str, Any] = json.loads(began.detail_json or "{}")
    assert detail["rollback"] is True and detail["requested_by"] == "ops" and detail["reason"] == "claim withdrawn"
    assert [(c.step, c.action) for c in saga.records(ts, "command")] == [("charge", "compensate")]

    state, ts = saga.drive(
        [saga.result("charge", 1, 91_000, action="compensate"), saga.result("reserve", 1, 92_000, action="compensate")],
        state,
    )
    assert state.status is RunStatus.COMPENSATED
    [out] = saga.records(ts, "output")
    assert out["id"] == output_id(saga.RUN, 1) != output_id(saga.RUN, 0), "a new output beside the retracted one"
    assert out["outcome"] == "COMPENSATED" and out["compensated"] == ["charge", "reserve"]
    assert out["reason"].startswith("retracted by ops: claim withdrawn"), out


def test_a_second_rollback_and_a_rollback_of_a_run_not_completed_change_nothing() -> None:
    once, _ = saga.drive([rollback(saga.RUN, saga.WF.name)], completed_saga())
    twice = transition(saga.WF, once, rollback(saga.RUN, saga.WF.name, at_ms=95_000))
    assert twice.state == once and twice.outgoing == [], "twice is once"
    running, _ = saga.drive([saga.RunRequested(saga.RUN, {"order": 1}, at_ms=1000)])
    ignored = transition(saga.WF, running, rollback(saga.RUN, saga.WF.name))
    assert ignored.state == running and ignored.outgoing == []


def test_a_run_without_compensations_is_still_retracted_saying_nothing_was_undone() -> None:
    state, ts = diamond.drive([*diamond.HAPPY, rollback(diamond.RUN, diamond.WF.name)])
    assert state is not None and state.status is RunStatus.COMPENSATED
    [out] = diamond.outputs(ts[-1])
    assert "nothing to undo" in out.record["reason"] and out.record["id"] == output_id(diamond.RUN, 1)
    # The rollback's journal events extend the run's hash chain.
    events = [e for t in ts for e in diamond.journal(t)]
    head = None
    for e in events:
        assert e.prev_hash == head
        head = chain.hash_event(e)
    assert [e.kind for e in events[-2:]] == [JournalKind.RUN_COMPENSATING, JournalKind.RUN_COMPENSATED]
