"""Retries with durable backoff, dead letters, compensation and redrive, in the pure transition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.engine import RetryPolicy, RunFailure, RunResult, Step, StepFailure, Workflow
from processors.engine.transition import (
    RedriveRequested,
    RunRequested,
    StepFinished,
    TimerFired,
    Transition,
    output_id,
    timers,
    transition,
)
from schemas.models import (
    DeadLetter,
    JournalKind,
    RunControl,
    RunState,
    RunStatus,
    StepError,
    StepResult,
    StepStatus,
)
from streams.timers import TimerQueue

RUN = "run-7"


def _handler(ctx: Any) -> dict[str, Any]:
    raise AssertionError("the transition must not run step handlers")


def _result(run: RunResult) -> dict[str, Any]:
    return {"id": run.output_id, "ok": True, "gen": run.generation}


def _failure(f: RunFailure) -> dict[str, Any]:
    return {
        "id": f.output_id,
        "ok": False,
        "outcome": f.outcome,
        "compensated": list(f.compensated),
        "comp_failed": list(f.compensation_failed),
        "reason": f.reason,
        "gen": f.generation,
    }


RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=1.0, multiplier=2.0, max_backoff_s=10.0, jitter=0.1)
UNDO = RetryPolicy(max_attempts=2, initial_backoff_s=0.5, jitter=0.0)

# reserve -> charge -> notify; reserve and charge can be undone.
WF = Workflow(
    name="order",
    steps=(
        Step("reserve", _handler, retry=RETRY, compensate=_handler, compensate_retry=UNDO),
        Step("charge", _handler, after=("reserve",), retry=RETRY, compensate=_handler, compensate_retry=UNDO),
        Step("audit", _handler, after=("reserve",), retry=RETRY),
        Step("notify", _handler, after=("charge", "audit"), retry=RETRY),
    ),
    input_topic="in",
    input_schema="x",
    output_topic="out",
    output_schema="y",
    run_id_of=lambda r: RUN,
    result=_result,
    on_failure=_failure,
)


def result(step: str, attempt: int, at_ms: int, error: str | None = None, action: str = "run", **kw: Any) -> StepFinished:
    retryable = kw.get("retryable", True)
    return StepFinished(
        StepResult(
            command_id=f"{RUN}/{step}/{attempt}",
            run_id=RUN,
            workflow=WF.name,
            step=step,
            attempt=attempt,
            output_json=None if error else json.dumps({step: attempt}),
            error=StepError(type=error, message=f"{step} said no", traceback="Traceback: x", retryable=retryable)
            if error
            else None,
            started_at_ms=at_ms - 10,
            finished_at_ms=at_ms - 1,
            worker="w1",
            action=action,
        ),
        at_ms=at_ms,
    )


def drive(events: list[Any], state: RunState | None = None, wf: Workflow = WF) -> tuple[RunState, list[Transition]]:
    out = []
    for event in events:
        t = transition(wf, state, event)
        out.append(t)
        state = t.state
    assert state is not None
    return state, out


def kinds(ts: list[Transition]) -> list[JournalKind]:
    return [o.record.kind for t in ts for o in t.outgoing if o.kind == "journal"]  # type: ignore[union-attr]


def records(ts: list[Transition], kind: str) -> list[Any]:
    return [o.record for t in ts for o in t.outgoing if o.kind == kind]


def step_of(state: RunState, name: str) -> Any:
    return next(s for s in state.steps if s.name == name)


START = RunRequested(RUN, {"order": 1}, at_ms=1_000)
UP_TO_NOTIFY = [START, result("reserve", 1, 1_100), result("charge", 1, 1_200), result("audit", 1, 1_250)]


# ---------------------------------------------------------------- the policy


def test_backoff_grows_by_the_multiplier_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff_s=1.0, multiplier=2.0, max_backoff_s=5.0, jitter=0.1)
    delays = [policy.backoff_ms(RUN, "s", n, n) for n in range(1, 6)]
    for base, got in zip([1000, 2000, 4000, 5000, 5000], delays, strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert len(set(delays)) == len(delays)  # jittered, not identical


def test_jitter_is_a_function_of_run_step_and_attempt() -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.backoff_ms("r1", "s", 2, 1) == policy.backoff_ms("r1", "s", 2, 1)
    spread = {policy.backoff_ms(f"r{i}", "s", 2, 1) for i in range(50)}
    assert len(spread) > 40 and min(spread) >= 250 and max(spread) <= 750
    assert RetryPolicy(jitter=0.0).backoff_ms("r1", "s", 2, 1) == 500


class Declined(Exception):
    pass


class HardDeclined(Declined):
    pass


def test_non_retryable_matches_types_subclasses_and_names() -> None:
    by_type = RetryPolicy(non_retryable=(Declined,))
    assert not by_type.retries(HardDeclined("x")) and by_type.retries(ValueError("x"))
    by_name = RetryPolicy(non_retryable=("Declined",))
    assert not by_name.retries(HardDeclined("x")) and by_name.retries(KeyError("x"))
    assert not RetryPolicy().retries(StepFailure("no", retryable=False))
    assert RetryPolicy().retries(StepFailure("maybe"))


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"initial_backoff_s": -1}, {"multiplier": 0.5}, {"jitter": 1.5}]
)
def test_nonsense_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# ---------------------------------------------------------------- durable backoff


def test_a_failed_attempt_waits_in_the_run_state_then_its_timer_fires_the_next_attempt() -> None:
    state, ts = drive([*UP_TO_NOTIFY, result("notify", 1, 2_000, error="Flaky")])
    notify = step_of(state, "notify")
    assert notify.status is StepStatus.WAITING and notify.attempt == 1
    backoff = RETRY.backoff_ms(RUN, "notify", 1, 1)
    assert notify.due_at_ms == 2_000 + backoff
    assert records(ts[-1:], "command") == []  # nothing is sent while it waits
    assert kinds(ts[-1:]) == [JournalKind.STEP_FAILED, JournalKind.STEP_RETRY_WAITING]
    assert timers(state) == [TimerFired(RUN, "notify", "run", 1, 2_000 + backoff)]

    fired = transition(WF, state, timers(state)[0])
    [command] = records([fired], "command")
    assert (command.command_id, command.attempt, command.scheduled_at_ms) == (f"{RUN}/notify/2", 2, 2_000 + backoff)
    assert fired.state is not None and timers(fired.state) == []
    # Firing the same timer again (a crash before the state was saved, then a restart) changes nothing.
    again = transition(WF, fired.state, timers(state)[0])
    assert again.applied is False and again.outgoing == []
    # And firing it twice from the same state gives the same records, ids included.
    assert transition(WF, state, timers(state)[0]).outgoing == fired.outgoing


def test_a_zero_backoff_retries_at_once() -> None:
    wf_now = RetryPolicy(max_attempts=2, initial_backoff_s=0.0)
    assert wf_now.backoff_ms(RUN, "s", 1, 1) == 0


def test_a_result_for_a_waiting_step_is_ignored() -> None:
    state, _ = drive([*UP_TO_NOTIFY, result("notify", 1, 2_000, error="Flaky")])
    late = transition(WF, state, result("notify", 1, 2_100))
    assert late.applied is False and late.outgoing == []


# ---------------------------------------------------------------- exhaustion, dead letter, compensation


def exhausted_notify() -> tuple[RunState, list[Transition]]:
    events: list[Any] = list(UP_TO_NOTIFY)
    state, ts = drive(events)
    for attempt in (1, 2, 3):
        state, more = drive([result("notify", attempt, 2_000 * attempt, error="Flaky")], state)
        ts += more
        if attempt < 3:
            state, more = drive(timers(state), state)
            ts += more
    return state, ts


def test_exhaustion_dead_letters_the_command_with_every_attempt() -> None:
    state, ts = exhausted_notify()
    [letter] = records(ts, "dead_letter")
    assert isinstance(letter, DeadLetter)
    assert letter.dead_letter_id == f"{RUN}/notify/run/3"
    assert (letter.kind, letter.run_id, letter.step, letter.workflow, letter.attempt) == (
        "step",
        RUN,
        "notify",
        "order",
        3,
    )
    attempts = json.loads(letter.attempts_json or "")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["type"] == "Flaky" and a["traceback"] and a["worker"] == "w1" for a in attempts)
    assert [a["finished_at_ms"] for a in attempts] == [1_999, 3_999, 5_999]
    assert json.loads(letter.input_json or "")["deps"] == {"charge": {"charge": 1}, "audit": {"audit": 1}}
    assert "exhausted 3 attempt(s): Flaky: notify said no" in letter.reason
    assert step_of(state, "notify").status is StepStatus.FAILED
    assert state.status is RunStatus.COMPENSATING


def test_compensations_run_in_reverse_order_of_completion_then_the_run_is_compensated() -> None:
    state, ts = exhausted_notify()
    [first] = records(ts[-1:], "command")
    assert (first.step, first.action, first.command_id) == ("charge", "compensate", f"{RUN}/charge/1/compensate")
    assert json.loads(first.input_json)["output"] == {"charge": 1}  # the compensation sees what it undoes
    state, t1 = drive([result("charge", 1, 7_000, action="compensate")], state)
    [second] = records(t1, "command")
    assert (second.step, second.action) == ("reserve", "compensate")
    state, t2 = drive([result("reserve", 1, 7_100, action="compensate")], state)
    assert state.status is RunStatus.COMPENSATED
    [out] = records(t2, "output")
    assert out["outcome"] == "COMPENSATED" and out["compensated"] == ["charge", "reserve"]
    assert out["reason"].startswith("step notify failed after 3 attempt(s): Flaky")
    assert kinds(t2)[-1] is JournalKind.RUN_COMPENSATED
    assert [step_of(state, s).status for s in ("reserve", "charge", "audit")] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.SUCCEEDED,  # audit declares no compensation
    ]


def test_a_failing_compensation_is_retried_then_dead_lettered_and_the_rest_still_compensated() -> None:
    state, _ = exhausted_notify()
    state, ts = drive([result("charge", 1, 7_000, error="LedgerDown", action="compensate")], state)
    charge = step_of(state, "charge")
    assert charge.status is StepStatus.COMPENSATION_WAITING and charge.due_at_ms == 7_500
    assert timers(state) == [TimerFired(RUN, "charge", "compensate", 1, 7_500)]
    state, more = drive([timers(state)[0], result("charge", 2, 8_000, error="LedgerDown", action="compensate")], state)
    ts += more
    [letter] = records(ts, "dead_letter")
    assert letter.dead_letter_id == f"{RUN}/charge/compensate/2" and letter.kind == "compensation"
    assert [c.step for c in records(more[-1:], "command")] == ["reserve"]  # carries on with the next
    state, end = drive([result("reserve", 1, 8_100, action="compensate")], state)
    assert state.status is RunStatus.FAILED
    [out] = records(end, "output")
    assert out["outcome"] == "FAILED" and out["comp_failed"] == ["charge"] and out["compensated"] == ["reserve"]


def test_parallel_steps_are_undone_newest_first() -> None:
    # audit and charge run in parallel after reserve; charge finishes last, so it is undone first.
    events = [START, result("reserve", 1, 1_100), result("audit", 1, 1_150), result("charge", 1, 1_300)]
    state, _ = drive(events)
    state, ts = drive([result("notify", 1, 2_000, error="Fatal", retryable=False)], state)
    assert [(c.step, c.action) for c in records(ts, "command")] == [("charge", "compensate")]


def test_a_failure_while_a_sibling_runs_waits_for_it_and_undoes_it_too() -> None:
    state, _ = drive([START, result("reserve", 1, 1_100)])
    # charge and audit are in flight; audit fails for good.
    state, ts = drive([result("audit", 1, 1_200, error="Fatal", retryable=False)], state)
    assert state.status is RunStatus.COMPENSATING and records(ts, "command") == []  # charge still runs
    state, ts = drive([result("charge", 1, 1_300)], state)  # it succeeds after all: undo it first
    assert [(c.step, c.action) for c in records(ts, "command")] == [("charge", "compensate")]


def test_a_waiting_retry_is_cancelled_when_the_run_starts_compensating() -> None:
    state, _ = drive([START, result("reserve", 1, 1_100), result("charge", 1, 1_200, error="Flaky")])
    assert step_of(state, "charge").status is StepStatus.WAITING
    state, ts = drive([result("audit", 1, 1_300, error="Fatal", retryable=False)], state)
    assert step_of(state, "charge").status is StepStatus.CANCELLED and timers(state) == []
    assert JournalKind.STEP_CANCELLED in kinds(ts)
    assert [(c.step, c.action) for c in records(ts, "command")] == [("reserve", "compensate")]


# ---------------------------------------------------------------- redrive


def redrive(letter_id: str, at_ms: int = 50_000) -> RedriveRequested:
    control = RunControl(
        control_id=f"redrive:{letter_id}",
        run_id=RUN,
        workflow=WF.name,
        action="redrive",
        step=None,
        dead_letter_id=letter_id,
        requested_at_ms=at_ms,
        requested_by="ops",
    )
    return RedriveRequested(control, at_ms)


def compensated_run() -> RunState:
    state, _ = exhausted_notify()
    state, _ = drive(
        [result("charge", 1, 7_000, action="compensate"), result("reserve", 1, 7_100, action="compensate")], state
    )
    assert state.status is RunStatus.COMPENSATED
    return state


def test_redrive_resumes_with_a_fresh_budget_and_redoes_what_was_undone() -> None:
    state = compensated_run()
    state, ts = drive([redrive(f"{RUN}/notify/run/3")], state)
    assert state.status is RunStatus.RUNNING and state.generation == 1 and state.failure_json is None
    assert kinds(ts)[0] is JournalKind.RUN_REDRIVEN
    # reserve was undone, so it runs again (attempt 2); audit's output stands.
    assert [(c.step, c.attempt) for c in records(ts, "command")] == [("reserve", 2)]
    state, ts = drive([result("reserve", 2, 51_000), result("charge", 2, 51_100)], state)
    assert [(c.step, c.attempt) for c in records(ts, "command")] == [("charge", 2), ("notify", 4)]
    # notify has a fresh budget of 3: attempts 4, 5 fail and wait, 6 succeeds.
    state, _ = drive([result("notify", 4, 52_000, error="Flaky")], state)
    assert step_of(state, "notify").status is StepStatus.WAITING
    state, ts = drive([timers(state)[0], result("notify", 5, 60_000)], state)
    assert state.status is RunStatus.COMPLETED
    [out] = records(ts, "output")
    assert out == {"id": output_id(RUN, 1), "ok": True, "gen": 1}
    assert output_id(RUN, 1) != output_id(RUN, 0) == output_id(RUN)


def test_a_second_redrive_of_the_same_dead_letter_changes_nothing() -> None:
    state = compensated_run()
    once, _ = drive([redrive(f"{RUN}/notify/run/3")], state)
    twice = transition(WF, once, redrive(f"{RUN}/notify/run/3", at_ms=60_000))
    assert twice.applied is False and twice.outgoing == [] and twice.state == once
    # Even after the redriven run finished.
    done, _ = drive([result("reserve", 2, 51_000), result("charge", 2, 51_100), result("notify", 4, 51_200)], once)
    assert done.status is RunStatus.COMPLETED
    late = transition(WF, done, redrive(f"{RUN}/notify/run/3", at_ms=70_000))
    assert late.applied is False and late.outgoing == []


def test_redrive_of_a_running_run_or_an_unknown_letter_is_ignored() -> None:
    state, _ = drive(UP_TO_NOTIFY)
    assert transition(WF, state, redrive(f"{RUN}/notify/run/3")).applied is False
    assert transition(WF, compensated_run(), redrive(f"{RUN}/notify/run/2")).applied is False


def test_redrive_of_a_dead_lettered_compensation_retries_it_and_ends_compensated() -> None:
    state, _ = exhausted_notify()
    state, _ = drive(
        [
            result("charge", 1, 7_000, error="LedgerDown", action="compensate"),
            TimerFired(RUN, "charge", "compensate", 1, 7_500),
            result("charge", 2, 8_000, error="LedgerDown", action="compensate"),
            result("reserve", 1, 8_100, action="compensate"),
        ],
        state,
    )
    assert state.status is RunStatus.FAILED
    state, ts = drive([redrive(f"{RUN}/charge/compensate/2")], state)
    assert state.status is RunStatus.COMPENSATING and state.generation == 1
    [command] = records(ts, "command")
    assert (command.step, command.action, command.attempt) == ("charge", "compensate", 3)
    state, ts = drive([result("charge", 3, 9_000, action="compensate")], state)
    assert state.status is RunStatus.COMPENSATED
    [out] = records(ts, "output")
    assert out["id"] == output_id(RUN, 1) and out["compensated"] == ["charge", "reserve"]


def test_every_record_id_is_unique_across_failure_compensation_and_redrive() -> None:
    state, ts = exhausted_notify()
    state, more = drive(
        [
            result("charge", 1, 7_000, action="compensate"),
            result("reserve", 1, 7_100, action="compensate"),
            redrive(f"{RUN}/notify/run/3"),
            result("reserve", 2, 51_000),
            result("charge", 2, 51_100),
            result("notify", 4, 51_200),
        ],
        state,
    )
    ids = [o.message_id for t in ts + more for o in t.outgoing]
    assert len(ids) == len(set(ids))
    seqs = [o.record.seq for t in ts + more for o in t.outgoing if o.kind == "journal"]  # type: ignore[union-attr]
    assert seqs == list(range(1, len(seqs) + 1))


# ---------------------------------------------------------------- the runtime's timer index


def test_timer_queue_pops_due_timers_in_order_and_forgets_replaced_ones() -> None:
    q = TimerQueue()
    a1 = TimerFired("a", "s", "run", 1, 100)
    b1 = TimerFired("b", "s", "run", 1, 50)
    q.set_run(0, "a", [a1])
    q.set_run(1, "b", [b1])
    assert q.next_due_ms() == 50 and len(q) == 2
    a2 = TimerFired("a", "s", "run", 2, 300)
    q.set_run(0, "a", [a2])  # a retried again: the old timer is stale
    assert q.pop_due(200) == [(1, b1)]
    assert q.next_due_ms() == 300
    q.drop_partition(0)
    assert q.next_due_ms() is None and q.pop_due(10_000) == []
