"""Pausing in the pure transition: a step whose policy pauses fails for good; nothing is undone until an operator acts.

The order saga of ``test_saga`` (reserve -> charge, audit -> notify) with notify's policy set to pause, and an
``on_pause`` that writes an output meanwhile.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from processors.engine import RetryPolicy, RunPaused, Workflow
from processors.engine.transition import RedriveRequested, Transition, output_id, timers, transition
from schemas.models import DeadLetter, JournalKind, RunControl, RunState, RunStatus, StepStatus
from tests.unit import test_saga as saga

RUN = saga.RUN
PAUSE = RetryPolicy(max_attempts=2, initial_backoff_s=1.0, jitter=0.0, on_exhausted="pause")


def _paused(p: RunPaused) -> dict[str, Any]:
    return {"id": p.output_id, "paused": True, "gen": p.generation, "reason": p.reason, "done": sorted(p.outputs)}


def _pausing(on_pause: Any = _paused) -> Workflow:
    steps = tuple(dataclasses.replace(s, retry=PAUSE) if s.name == "notify" else s for s in saga.WF.steps)
    return dataclasses.replace(saga.WF, steps=steps, on_pause=on_pause)


WF = _pausing()


def drive(events: list[Any], state: RunState | None = None, wf: Workflow = WF) -> tuple[RunState, list[Transition]]:
    return saga.drive(events, state, wf)


def control(action: str, at_ms: int = 50_000, letter: str | None = None) -> RedriveRequested:
    return RedriveRequested(
        RunControl(
            control_id=f"{action}:{RUN}:{at_ms}",
            run_id=RUN,
            workflow=WF.name,
            action=action,
            dead_letter_id=letter,
            requested_at_ms=at_ms,
            requested_by="ops",
            reason="claimant asked us to stop" if action == "compensate" else None,
        ),
        at_ms,
    )


LETTER = f"{RUN}/notify/run/2"
EXHAUST_NOTIFY: list[Any] = [
    *saga.UP_TO_NOTIFY,
    saga.result("notify", 1, 2_000, error="Bounced"),
    saga.TimerFired(RUN, "notify", "run", 1, 3_000),
    saga.result("notify", 2, 3_100, error="Bounced"),
]


def paused_run(wf: Workflow = WF) -> tuple[RunState, list[Transition]]:
    state, ts = drive(EXHAUST_NOTIFY, wf=wf)
    assert state.status is RunStatus.PAUSED
    return state, ts


def test_exhaustion_pauses_dead_letters_and_undoes_nothing() -> None:
    state, ts = paused_run()
    [letter] = saga.records(ts, "dead_letter")
    assert isinstance(letter, DeadLetter) and letter.dead_letter_id == LETTER
    last = saga.kinds(ts[-1:])
    assert last[-2:] == [JournalKind.STEP_DEAD_LETTERED, JournalKind.RUN_PAUSED]
    assert JournalKind.RUN_COMPENSATING not in saga.kinds(ts)
    assert not [c for c in saga.records(ts, "command") if c.action == "compensate"]
    assert [saga.step_of(state, s).status for s in ("reserve", "charge", "audit", "notify")] == [
        StepStatus.SUCCEEDED,
        StepStatus.SUCCEEDED,
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
    ]
    assert timers(state) == []


def test_on_pause_writes_an_output_journaled_on_the_chain() -> None:
    _, ts = paused_run()
    [out] = saga.records(ts, "output")
    assert out["id"] == output_id(RUN, 0) and out["paused"] is True and out["gen"] == 0
    assert out["done"] == ["audit", "charge", "reserve"]
    assert out["reason"].startswith("step notify failed after 2 attempt(s): Bounced: notify said no; run paused")
    assert LETTER in out["reason"]
    [paused] = [o for o in ts[-1].outgoing if o.kind == "journal" and o.record.kind is JournalKind.RUN_PAUSED]
    assert json.loads(paused.record.detail_json or "")["output"] == out
    [written] = [o for o in ts[-1].outgoing if o.kind == "output"]
    assert ts[-1].outgoing.index(written) > ts[-1].outgoing.index(paused)  # the output names the chain ending it
    assert written.chain_head == ts[-1].state.chain_head


def test_without_on_pause_a_paused_run_writes_nothing_and_a_failing_on_pause_still_pauses() -> None:
    _, ts = paused_run(_pausing(on_pause=None))
    assert saga.records(ts, "output") == []

    def broken(p: RunPaused) -> dict[str, Any]:
        raise KeyError("route")

    state, ts = paused_run(_pausing(on_pause=broken))
    assert saga.records(ts, "output") == []
    [paused] = [o.record for o in ts[-1].outgoing if o.kind == "journal" and o.record.kind is JournalKind.RUN_PAUSED]
    assert json.loads(paused.detail_json or "")["on_pause_error"] == "KeyError: 'route'"
    assert state.status is RunStatus.PAUSED


def test_a_paused_run_ignores_timers_and_late_results_start_nothing() -> None:
    state, _ = paused_run()
    assert transition(WF, state, saga.TimerFired(RUN, "notify", "run", 1, 9_000)).applied is False
    stale = transition(WF, state, saga.result("notify", 2, 9_100))
    assert stale.applied is False and stale.outgoing == []


def test_redrive_resumes_with_a_fresh_budget_and_its_output_has_a_new_id() -> None:
    state, first = paused_run()
    state, ts = drive([control("redrive", letter=LETTER)], state)
    assert state.status is RunStatus.RUNNING and state.generation == 1
    # Nothing was undone, so nothing runs again but the paused step, with attempt numbers going on.
    assert [(c.step, c.attempt, c.action) for c in saga.records(ts, "command")] == [("notify", 3, "run")]
    state, ts = drive([saga.result("notify", 3, 51_000)], state)
    assert state.status is RunStatus.COMPLETED
    [done] = saga.records(ts, "output")
    [paused] = saga.records(first, "output")
    assert done == {"id": output_id(RUN, 1), "ok": True, "gen": 1} and paused["id"] != done["id"]


def test_a_second_pause_after_a_redrive_writes_a_second_output_and_waits_again() -> None:
    state, _ = paused_run()
    state, _ = drive([control("redrive", letter=LETTER)], state)
    state, ts = drive(
        [
            saga.result("notify", 3, 51_000, error="Bounced"),
            saga.TimerFired(RUN, "notify", "run", 3, 52_000),
            saga.result("notify", 4, 52_100, error="Bounced"),
        ],
        state,
    )
    assert state.status is RunStatus.PAUSED
    [again] = saga.records(ts, "output")
    assert again["id"] == output_id(RUN, 1) and f"{RUN}/notify/run/4" in again["reason"]


def test_an_operator_compensate_undoes_newest_first_and_ends_with_a_new_output() -> None:
    state, first = paused_run()
    state, ts = drive([control("compensate")], state)
    assert state.status is RunStatus.COMPENSATING and state.generation == 1
    [detail] = [
        json.loads(o.record.detail_json or "")
        for o in ts[-1].outgoing
        if o.kind == "journal" and o.record.kind is JournalKind.RUN_COMPENSATING
    ]
    assert detail["compensated_by"] == "ops" and detail["reason"] == "claimant asked us to stop"
    assert [(c.step, c.action) for c in saga.records(ts, "command")] == [("charge", "compensate")]
    state, ts = drive(
        [saga.result("charge", 1, 51_000, action="compensate"), saga.result("reserve", 1, 51_100, action="compensate")],
        state,
    )
    assert state.status is RunStatus.COMPENSATED
    [out] = saga.records(ts, "output")
    assert out["id"] == output_id(RUN, 1) != saga.records(first, "output")[0]["id"]
    assert out["outcome"] == "COMPENSATED" and out["compensated"] == ["charge", "reserve"]
    # Twice is once; and only a PAUSED run takes an operator's compensate.
    again = transition(WF, state, control("compensate", at_ms=60_000))
    assert again.applied is False and again.outgoing == []
    running, _ = drive(saga.UP_TO_NOTIFY)
    assert transition(WF, running, control("compensate")).applied is False


def test_every_record_id_is_unique_across_pause_redrive_pause_and_compensate() -> None:
    state, ts = paused_run()
    state, more = drive(
        [
            control("redrive", letter=LETTER),
            saga.result("notify", 3, 51_000, error="Bounced"),
            saga.TimerFired(RUN, "notify", "run", 3, 52_000),
            saga.result("notify", 4, 52_100, error="Bounced"),
            control("compensate", at_ms=53_000),
            saga.result("charge", 1, 54_000, action="compensate"),
            saga.result("reserve", 1, 54_100, action="compensate"),
        ],
        state,
    )
    everything = ts + more
    ids = [o.message_id for t in everything for o in t.outgoing]
    assert len(ids) == len(set(ids))
    outputs = [o.message_id for t in everything for o in t.outgoing if o.kind == "output"]
    assert outputs == [output_id(RUN, 0), output_id(RUN, 1), output_id(RUN, 2)]
    assert more[-1].state.status is RunStatus.COMPENSATED
