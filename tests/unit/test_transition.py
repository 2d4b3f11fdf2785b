"""The orchestrator's pure transition on a small diamond workflow: a -> (b, c) -> d."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from processors.engine import RetryPolicy, RunFailure, RunResult, Step, Workflow
from processors.engine.transition import (
    Outgoing,
    RunRequested,
    StepFinished,
    Transition,
    output_id,
    transition,
)
from schemas.models import (
    DeadLetter,
    JournalEvent,
    JournalKind,
    RunState,
    RunStatus,
    StepCommand,
    StepError,
    StepResult,
    StepStatus,
)

RUN = "run-1"
INPUT = {"claim": "C-1", "amount": 100}
RUN_INFO = {"run": {"started_at_ms": 1000}}  # what every step input says of its run


def _never_called(ctx: Any) -> dict[str, Any]:
    raise AssertionError("the transition must not run step handlers")


def _result(run: RunResult) -> dict[str, Any]:
    return {"id": run.output_id, "ok": True, "total": run.outputs["d"]["total"], "at": run.at_ms}


def _on_failure(failure: RunFailure) -> dict[str, Any]:
    return {
        "id": failure.output_id,
        "ok": False,
        "reason": failure.reason,
        "claim": failure.input["claim"],
        "at": failure.at_ms,
    }


ONCE = RetryPolicy(max_attempts=1)
# Immediate retries (no backoff) keep these tests about ordering; tests/unit/test_saga.py covers timers.
THRICE_NOW = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, jitter=0.0)


WF = Workflow(
    name="diamond",
    steps=(
        Step("a", _never_called, retry=ONCE),
        Step("b", _never_called, after=("a",), retry=THRICE_NOW, timeout_s=2.5),
        Step("c", _never_called, after=("a",), retry=ONCE),
        Step("d", _never_called, after=("b", "c"), retry=ONCE),
    ),
    input_topic="in",
    input_schema="test.In",
    output_topic="out",
    output_schema="test.Out",
    run_id_of=lambda record: str(record["claim"]),
    result=_result,
    on_failure=_on_failure,
)


# ---------------------------------------------------------------- helpers


def commands(t: Transition) -> list[StepCommand]:
    return [o.record for o in t.outgoing if o.kind == "command"]  # type: ignore[misc]


def journal(t: Transition) -> list[JournalEvent]:
    return [o.record for o in t.outgoing if o.kind == "journal"]  # type: ignore[misc]


def outputs(t: Transition) -> list[Outgoing]:
    return [o for o in t.outgoing if o.kind == "output"]


def step_of(state: RunState | None, name: str) -> Any:
    assert state is not None
    return next(s for s in state.steps if s.name == name)


def ok(step: str, attempt: int = 1, output: dict[str, Any] | None = None, at_ms: int = 2000) -> StepFinished:
    return StepFinished(
        StepResult(
            command_id=f"{RUN}/{step}/{attempt}",
            run_id=RUN,
            workflow=WF.name,
            step=step,
            attempt=attempt,
            output_json=json.dumps(output if output is not None else {step: attempt}),
            started_at_ms=at_ms - 5,
            finished_at_ms=at_ms - 1,
        ),
        at_ms=at_ms,
    )


def failed(step: str, attempt: int = 1, retryable: bool = True, at_ms: int = 2000) -> StepFinished:
    return StepFinished(
        StepResult(
            command_id=f"{RUN}/{step}/{attempt}",
            run_id=RUN,
            workflow=WF.name,
            step=step,
            attempt=attempt,
            error=StepError(type="Boom", message=f"{step} broke", traceback="tb", retryable=retryable),
            started_at_ms=at_ms - 5,
            finished_at_ms=at_ms - 1,
        ),
        at_ms=at_ms,
    )


def started() -> Transition:
    return transition(WF, None, RunRequested(RUN, INPUT, at_ms=1000))


def drive(events: list[Any]) -> tuple[RunState | None, list[Transition]]:
    state: RunState | None = None
    steps = []
    for event in events:
        t = transition(WF, state, event)
        steps.append(t)
        state = t.state
    return state, steps


HAPPY = [
    RunRequested(RUN, INPUT, at_ms=1000),
    ok("a", output={"x": 1}, at_ms=1100),
    ok("c", output={"y": 2}, at_ms=1200),
    ok("b", output={"z": 3}, at_ms=1300),
    ok("d", output={"total": 6}, at_ms=1400),
]


# ---------------------------------------------------------------- fan-out and fan-in


def test_start_schedules_only_the_root_step() -> None:
    t = started()
    assert t.applied
    assert [c.command_id for c in commands(t)] == [f"{RUN}/a/1"]
    assert [e.kind for e in journal(t)] == [JournalKind.RUN_STARTED, JournalKind.STEP_SCHEDULED]
    assert outputs(t) == []
    assert t.state is not None and t.state.status is RunStatus.RUNNING
    assert [s.status for s in t.state.steps] == [
        StepStatus.SCHEDULED,
        StepStatus.PENDING,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]
    command = commands(t)[0]
    assert json.loads(command.input_json) == {"input": INPUT, "deps": {}, "run": {"started_at_ms": 1000}}
    assert command.attempt == 1 and command.scheduled_at_ms == 1000


def test_fan_out_then_fan_in_waits_for_every_dependency() -> None:
    state, (_, ta, tc, tb, td) = drive(HAPPY)
    # a done -> b and c together, in declaration order, each fed a's output.
    assert [c.step for c in commands(ta)] == ["b", "c"]
    assert all(json.loads(c.input_json) == {"input": INPUT, "deps": {"a": {"x": 1}}, **RUN_INFO} for c in commands(ta))
    assert next(c for c in commands(ta) if c.step == "b").timeout_ms == 2500
    # c done while b runs -> nothing to schedule yet.
    assert commands(tc) == []
    assert step_of(tc.state, "d").status is StepStatus.PENDING
    # b done -> d, fed both outputs (not a's: d does not depend on a).
    assert [c.step for c in commands(tb)] == ["d"]
    assert json.loads(commands(tb)[0].input_json) == {
        "input": INPUT,
        "deps": {"b": {"z": 3}, "c": {"y": 2}},
        **RUN_INFO,
    }
    # d done -> the run completes with one output built by result().
    assert commands(td) == []
    assert state is not None and state.status is RunStatus.COMPLETED
    assert [o.record for o in outputs(td)] == [{"id": output_id(RUN), "ok": True, "total": 6, "at": 1400}]
    assert journal(td)[-1].kind is JournalKind.RUN_COMPLETED
    assert all(s.status is StepStatus.SUCCEEDED for s in state.steps)
    assert state.updated_at_ms == 1400 and state.started_at_ms == 1000


def test_each_step_is_commanded_exactly_once_on_the_happy_path() -> None:
    _, ts = drive(HAPPY)
    ids = [c.command_id for t in ts for c in commands(t)]
    assert sorted(ids) == sorted(f"{RUN}/{s}/1" for s in "abcd")


# ---------------------------------------------------------------- duplicates and stale events


def test_duplicate_run_requested_is_ignored() -> None:
    state = started().state
    assert state is not None
    again = transition(WF, state, RunRequested(RUN, json.loads(state.input_json), at_ms=5000))
    assert again.applied is False
    assert again.outgoing == []
    assert again.state == state


def test_a_conflicting_resubmission_is_journaled_and_dead_lettered_once() -> None:
    state = started().state
    assert state is not None
    other = {**json.loads(state.input_json), "claim": "other"}
    conflict = transition(WF, state, RunRequested(RUN, other, at_ms=5000))
    assert conflict.applied and conflict.state is not None
    [event] = [o.record for o in conflict.outgoing if o.kind == "journal"]
    [letter] = [o.record for o in conflict.outgoing if o.kind == "dead_letter"]
    assert isinstance(event, JournalEvent) and event.kind is JournalKind.INPUT_CONFLICT
    assert isinstance(letter, DeadLetter) and letter.kind == "conflict" and "claim" in letter.reason
    assert json.loads(letter.input_json or "{}") == other
    assert conflict.state.input_json == state.input_json, "the run goes on with its first input"
    assert conflict.state.steps == state.steps
    # The same conflicting input again (redelivered, or sent twice) is recorded once.
    again = transition(WF, conflict.state, RunRequested(RUN, other, at_ms=6000))
    assert again.applied is False and again.outgoing == []


def test_duplicate_step_finished_is_ignored() -> None:
    state, _ = drive(HAPPY[:2])
    dup = transition(WF, state, ok("a", output={"x": 999}, at_ms=9999))
    assert dup.applied is False and dup.outgoing == [] and dup.state == state


def test_stale_attempt_is_ignored() -> None:
    state, _ = drive([*HAPPY[:2], failed("b", attempt=1)])  # b is now on attempt 2
    assert step_of(state, "b").attempt == 2
    stale = transition(WF, state, ok("b", attempt=1))
    assert stale.applied is False and stale.outgoing == [] and stale.state == state
    late_failure = transition(WF, state, failed("b", attempt=1))
    assert late_failure.applied is False and late_failure.outgoing == []


def test_result_for_a_step_not_yet_scheduled_or_unknown_is_ignored() -> None:
    state = started().state
    for event in (ok("d"), ok("nope")):
        t = transition(WF, state, event)
        assert t.applied is False and t.outgoing == [] and t.state == state


def test_result_for_an_unknown_run_is_ignored() -> None:
    t = transition(WF, None, ok("a"))
    assert t.applied is False and t.outgoing == [] and t.state is None


def test_result_after_the_run_finished_is_ignored() -> None:
    state, _ = drive(HAPPY)
    t = transition(WF, state, ok("d", at_ms=9999))
    assert t.applied is False and t.outgoing == [] and t.state == state


# ---------------------------------------------------------------- retries and failure


def test_retryable_failure_with_attempts_left_schedules_the_next_attempt() -> None:
    state, ts = drive([*HAPPY[:2], failed("b", attempt=1, at_ms=1500)])
    t = ts[-1]
    assert t.applied
    [command] = commands(t)
    assert command.command_id == f"{RUN}/b/2"
    assert (command.step, command.attempt) == ("b", 2)
    assert json.loads(command.input_json) == {"input": INPUT, "deps": {"a": {"x": 1}}, **RUN_INFO}
    assert [e.kind for e in journal(t)] == [JournalKind.STEP_FAILED, JournalKind.STEP_SCHEDULED]
    assert json.loads(journal(t)[0].detail_json or "")["message"] == "b broke"
    assert outputs(t) == []
    assert state is not None and state.status is RunStatus.RUNNING
    assert (step_of(state, "b").status, step_of(state, "b").attempt) == (StepStatus.SCHEDULED, 2)
    # The retried attempt's success moves the run on as normal.
    state, ts = drive([*HAPPY[:2], failed("b", 1), ok("b", 2, {"z": 3}), ok("c", output={"y": 2})])
    assert [c.command_id for c in commands(ts[-1])] == [f"{RUN}/d/1"]


def _assert_run_failed(t: Transition, step: str, attempts: int, lettered: bool = True) -> None:
    assert t.applied
    assert commands(t) == []
    assert t.state is not None and t.state.status is RunStatus.FAILED
    assert step_of(t.state, step).status is StepStatus.FAILED
    letters = [o.record for o in t.outgoing if o.kind == "dead_letter"]
    if lettered:  # else it was written by the transition that stopped the run
        assert [getattr(x, "dead_letter_id", None) for x in letters] == [f"{RUN}/{step}/run/{attempts}"]
    [out] = outputs(t)
    assert out.message_id == output_id(RUN)
    assert out.record == {
        "id": output_id(RUN),
        "ok": False,
        "reason": f"step {step} failed after {attempts} attempt(s): Boom: {step} broke",
        "claim": "C-1",
        "at": 3000,
    }
    assert [e.kind for e in journal(t)][-1] is JournalKind.RUN_FAILED


def test_non_retryable_failure_fails_the_run_at_once() -> None:
    _, ts = drive([*HAPPY[:2], ok("c"), failed("b", attempt=1, retryable=False, at_ms=3000)])
    _assert_run_failed(ts[-1], "b", 1)
    assert [e.kind for e in journal(ts[-1])] == [
        JournalKind.STEP_FAILED,
        JournalKind.STEP_DEAD_LETTERED,
        JournalKind.RUN_COMPENSATING,
        JournalKind.RUN_FAILED,
    ]


def test_exhausted_attempts_fail_the_run() -> None:
    _, ts = drive([*HAPPY[:2], ok("c"), failed("b", 1), failed("b", 2), failed("b", 3, at_ms=3000)])
    assert [c.command_id for c in commands(ts[3])] == [f"{RUN}/b/2"]
    assert [c.command_id for c in commands(ts[4])] == [f"{RUN}/b/3"]
    _assert_run_failed(ts[-1], "b", 3)


def test_single_attempt_step_fails_the_run_on_first_retryable_error() -> None:
    _, ts = drive([*HAPPY[:2], ok("b"), failed("c", attempt=1, retryable=True, at_ms=3000)])
    _assert_run_failed(ts[-1], "c", 1)


def test_a_failing_run_waits_for_steps_in_flight_then_ignores_late_results() -> None:
    state, _ = drive([*HAPPY[:2], failed("c", retryable=False, at_ms=3000)])
    assert state is not None and state.status is RunStatus.COMPENSATING  # b still runs
    t = transition(WF, state, ok("b", at_ms=3000))
    _assert_run_failed(t, "c", 1, lettered=False)
    late = transition(WF, t.state, ok("b", at_ms=9999))
    assert late.applied is False and late.outgoing == [] and late.state == t.state


# ---------------------------------------------------------------- journal, ids, determinism

RUNS = {
    "happy": HAPPY,
    "retry-then-ok": [*HAPPY[:2], failed("b", 1), ok("c"), ok("b", 2), ok("d", output={"total": 1})],
    "exhausted": [*HAPPY[:2], ok("c"), failed("b", 1), failed("b", 2), failed("b", 3)],
    "failed-while-sibling-runs": [*HAPPY[:2], failed("c", retryable=False), ok("b")],
    "with-duplicates": [HAPPY[0], HAPPY[0], HAPPY[1], HAPPY[1], HAPPY[2], HAPPY[3], HAPPY[2], HAPPY[4], HAPPY[4]],
}


@pytest.mark.parametrize("events", RUNS.values(), ids=RUNS.keys())
def test_journal_seq_counts_from_one_without_gaps(events: list[Any]) -> None:
    state, ts = drive(events)
    events_out = [e for t in ts for e in journal(t)]
    assert [e.seq for e in events_out] == list(range(1, len(events_out) + 1))
    assert all(e.event_id == f"{RUN}/{e.seq}" for e in events_out)
    assert all(e.run_id == RUN and e.workflow == WF.name for e in events_out)
    assert state is not None and state.seq == len(events_out)
    assert events_out[0].kind is JournalKind.RUN_STARTED
    assert events_out[-1].kind in (JournalKind.RUN_COMPLETED, JournalKind.RUN_FAILED, JournalKind.RUN_COMPENSATED)
    # Every outgoing record's message id is unique: the runtime dedupes by it.
    ids = [o.message_id for t in ts for o in t.outgoing]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("events", RUNS.values(), ids=RUNS.keys())
def test_one_output_per_run(events: list[Any]) -> None:
    _, ts = drive(events)
    outs = [o for t in ts for o in outputs(t)]
    assert len(outs) == 1
    assert outs[0].message_id == output_id(RUN)


def test_success_and_failure_outputs_share_the_run_output_id() -> None:
    _, ok_ts = drive(HAPPY)
    _, fail_ts = drive([*HAPPY[:2], failed("b", retryable=False), ok("c")])
    [ok_out] = [o for t in ok_ts for o in outputs(t)]
    [fail_out] = [o for t in fail_ts for o in outputs(t)]
    assert ok_out.message_id == fail_out.message_id == output_id(RUN)
    assert output_id(RUN) != output_id("run-2")
    assert output_id(RUN) == output_id("run-1")


@pytest.mark.parametrize("events", RUNS.values(), ids=RUNS.keys())
def test_same_state_and_event_give_identical_outgoing(events: list[Any]) -> None:
    state: RunState | None = None
    for event in events:
        first = transition(WF, state, event)
        second = transition(WF, state, event)
        assert first == second
        assert [(o.kind, o.message_id, o.record) for o in first.outgoing] == [
            (o.kind, o.message_id, o.record) for o in second.outgoing
        ]
        state = first.state
    # And a whole replay from scratch reproduces the same records.
    _, a = drive(events)
    _, b = drive(events)
    assert [t.outgoing for t in a] == [t.outgoing for t in b]


def test_transition_does_not_mutate_its_input_state() -> None:
    state, _ = drive(HAPPY[:2])
    assert state is not None
    before = state.model_dump()
    transition(WF, state, ok("b"))
    transition(WF, state, failed("c", retryable=False))
    assert state.model_dump() == before


def test_input_key_order_does_not_change_the_commands() -> None:
    a = transition(WF, None, RunRequested(RUN, {"claim": "C-1", "amount": 100}, at_ms=1))
    b = transition(WF, None, RunRequested(RUN, {"amount": 100, "claim": "C-1"}, at_ms=1))
    assert a.outgoing == b.outgoing


# ---------------------------------------------------------------- records that cannot be applied (hardening)


def test_a_rejected_record_fails_the_run_visibly_and_awaits_its_steps_in_flight() -> None:
    from processors.engine.transition import RecordRejected

    state, _ = drive([RunRequested(RUN, INPUT, at_ms=1000), ok("a")])  # b and c in flight
    rejected = RecordRejected(RUN, "step output is not JSON", "MalformedResult", "topic:0:7", 3000, "b", 1)
    t = transition(WF, state, rejected)
    assert t.applied and t.state is not None and t.state.status is RunStatus.COMPENSATING
    assert step_of(t.state, "b").status is StepStatus.FAILED
    assert [e.kind for e in journal(t)] == [JournalKind.RUN_COMPENSATING]
    assert "MalformedResult" in (journal(t)[0].detail_json or "") and "topic:0:7" in (journal(t)[0].detail_json or "")
    done = transition(WF, t.state, ok("c", at_ms=4000))  # c was in flight: awaited, then the run ends
    assert done.state is not None and done.state.status is RunStatus.FAILED
    [out] = outputs(done)
    assert isinstance(out.record, dict) and "run failed" not in out.record["reason"]
    assert "step b failed: MalformedResult: step output is not JSON" in out.record["reason"]


def test_a_rejected_record_for_an_attempt_the_run_does_not_wait_for_changes_nothing() -> None:
    from processors.engine.transition import RecordRejected

    state, _ = drive([RunRequested(RUN, INPUT, at_ms=1000), ok("a")])
    stale = RecordRejected(RUN, "garbage", "MalformedResult", "t:0:1", 3000, "b", 7)
    assert transition(WF, state, stale).applied is False
    assert transition(WF, state, RecordRejected(RUN, "garbage", "X", "t:0:1", 3000, "a", 1)).applied is False


def test_a_result_function_that_raises_fails_the_run_through_on_failure() -> None:
    def broken_result(run: RunResult) -> dict[str, Any]:
        return {"total": run.outputs["d"]["missing"]}  # KeyError on the output it was given

    wf = dataclasses.replace(WF, result=broken_result)
    state: RunState | None = None
    for ev in [RunRequested(RUN, INPUT, at_ms=1000), ok("a"), ok("b"), ok("c"), ok("d", at_ms=5000)]:
        t = transition(wf, state, ev)
        state = t.state
    assert state is not None and state.status is RunStatus.FAILED
    [out] = outputs(t)
    assert isinstance(out.record, dict) and "run failed: KeyError" in out.record["reason"]


def test_an_on_failure_that_raises_still_ends_the_run_with_why_and_no_output() -> None:
    def broken_on_failure(failure: RunFailure) -> dict[str, Any]:
        raise KeyError("reserve")

    wf = dataclasses.replace(WF, on_failure=broken_on_failure)
    t = transition(wf, None, RunRequested(RUN, INPUT, at_ms=1000))
    t = transition(wf, t.state, failed("a", retryable=False))
    assert t.state is not None and t.state.status is RunStatus.FAILED
    assert outputs(t) == []
    ended = journal(t)[-1]
    assert ended.kind is JournalKind.RUN_FAILED and "on_failure failed too: KeyError" in (ended.detail_json or "")
