"""Capture and replay, without Kafka: a run is executed in memory (transition + run_step), then replayed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from typing import Any

import pytest

from processors.engine import RetryPolicy, RunFailure, RunResult, Step, StepContext, Workflow
from processors.engine.errors import NonDeterministicCall
from processors.engine.execute import run_step
from processors.engine.recorder import Recorder
from processors.engine.replay import RecordedRun, compare, diff_outputs, recorded_run, replay_run
from processors.engine.transition import Event, RunRequested, StepFinished, TimerFired, timers, transition
from processors.models import LocalModel, ModelRequest
from schemas.models import JournalEvent, RunState, StepCommand

# ---------------------------------------------------------------- a workflow that uses time, randomness, a model


async def quote(ctx: StepContext) -> dict[str, Any]:
    stamp = ctx.now()
    draw = ctx.random()
    answer = await ctx.model(ModelRequest.of("severity", f"claim {ctx.input['claim']} for {ctx.input['amount']}"))
    return {"at": stamp.isoformat(), "draw": draw, "text": answer.text, "tokens": answer.tokens}


async def flaky(ctx: StepContext) -> dict[str, Any]:
    if ctx.random() < 0.999:  # fails almost always: which attempts fail is recorded, not recomputed
        raise ConnectionError("upstream timed out")
    return {"ok": True}


async def fixed(ctx: StepContext) -> dict[str, Any]:
    ctx.random()  # the same calls as before, so the recording still fits
    return {"ok": True}


def _result(run: RunResult) -> dict[str, Any]:
    return {"id": run.output_id, "steps": sorted(run.outputs)}


def _failed(f: RunFailure) -> dict[str, Any]:
    return {"id": f.output_id, "failed": f.step}


def wf(flaky_handler: Any = flaky) -> Workflow:
    return Workflow(
        name="replayed",
        steps=(
            Step("quote", quote),
            Step("call", flaky_handler, after=("quote",), retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01)),
        ),
        input_topic="i",
        input_schema="x",
        output_topic="o",
        output_schema="y",
        run_id_of=lambda r: "run-1",
        result=_result,
        on_failure=_failed,
    )


def execute(workflow: Workflow, run_input: dict[str, Any]) -> list[JournalEvent]:
    """Run a workflow to its end in memory, timers firing at once; the journal it writes."""
    models = LocalModel(speed=1000.0)
    state: RunState | None = None
    events: deque[Event] = deque([RunRequested("run-1", run_input, at_ms=1_000)])
    journal: list[JournalEvent] = []
    while events:
        t = transition(workflow, state, events.popleft())
        state = t.state
        for out in t.outgoing:
            if isinstance(out.record, JournalEvent):
                journal.append(out.record)
            elif isinstance(out.record, StepCommand):
                result = asyncio.run(run_step({workflow.name: workflow}, out.record, "w", models=models))
                events.append(StepFinished(result, result.finished_at_ms))
        if state is not None and not events:
            events.extend(timers(state))
    return journal


INPUT = {"claim": "C-9", "amount": 1200}


# ---------------------------------------------------------------- the recorder


def test_the_recorder_serves_back_what_it_recorded_in_order() -> None:
    live = Recorder(models=LocalModel(speed=1000.0))
    request = ModelRequest.of("plan", "a claim")
    first = (live.now(), live.random(), asyncio.run(live.model(request)))
    again = Recorder(recorded=json.loads(json.dumps(live.calls)))
    assert (again.now(), again.random(), asyncio.run(again.model(request))) == first
    assert again.calls == live.calls


def test_a_replay_that_asks_for_something_else_fails_loudly() -> None:
    live = Recorder()
    live.now()
    with pytest.raises(NonDeterministicCall, match="asks for random, the recording has now"):
        Recorder(recorded=live.calls).random()
    replay = Recorder(recorded=live.calls)
    replay.now()
    with pytest.raises(NonDeterministicCall, match="was not made"):
        replay.now()
    recorded = Recorder(models=LocalModel(speed=1000.0))
    asyncio.run(recorded.model(ModelRequest.of("plan", "a claim")))
    with pytest.raises(NonDeterministicCall, match="messages"):
        asyncio.run(Recorder(recorded=recorded.calls).model(ModelRequest.of("plan", "another claim")))


# ---------------------------------------------------------------- capture in the journal


def test_the_journal_captures_inputs_outputs_errors_and_outside_values() -> None:
    run = recorded_run(execute(wf(), INPUT))
    assert run.status == "FAILED" and run.workflow == "replayed" and run.input == INPUT
    quote_attempt, *calls = run.attempts
    assert quote_attempt.input == {"input": INPUT, "deps": {}, "run": {"started_at_ms": 1_000}}
    assert [c["call"] for c in quote_attempt.recorded] == ["now", "random", "model"]
    assert quote_attempt.output is not None and quote_attempt.output["draw"] == quote_attempt.recorded[1]["value"]
    assert [(a.step, a.attempt, a.error is not None) for a in calls] == [("call", 1, True), ("call", 2, True)]
    assert calls[0].error is not None and calls[0].error["type"] == "ConnectionError"
    assert calls[0].input["deps"]["quote"] == quote_attempt.output


def test_a_run_export_round_trips() -> None:
    run = recorded_run(execute(wf(), INPUT))
    assert RecordedRun.from_json(run.to_json()) == run


# ---------------------------------------------------------------- replay


def test_a_failed_run_replays_to_the_same_failure() -> None:
    run = recorded_run(execute(wf(), INPUT))
    replay = asyncio.run(replay_run(run, wf()))
    assert [a.verdict for a in replay.attempts] == ["same", "failure reproduced", "failure reproduced"]
    assert replay.exit_code == 3 and not replay.would_complete
    # The model was not called again: its recorded answer was served (the text is the same anyway, tokens too).
    assert replay.attempts[0].output == run.attempts[0].output


def test_after_a_fix_the_replay_reports_different_and_the_run_would_complete() -> None:
    run = recorded_run(execute(wf(), INPUT))
    replay = asyncio.run(replay_run(run, wf(fixed)))
    assert [a.verdict for a in replay.attempts] == ["same", "different", "different"]
    assert replay.exit_code == 1 and replay.would_complete
    assert replay.result == {"id": replay.result["id"] if replay.result else None, "steps": ["call", "quote"]}
    diff = "\n".join(replay.attempts[1].diff)
    assert '-  "error": "ConnectionError: upstream timed out"' in diff and '+  "ok": true' in diff


def test_live_replay_calls_for_real_instead_of_serving_the_recording() -> None:
    run = recorded_run(execute(wf(), INPUT))
    replay = asyncio.run(replay_run(run, wf(), live=True, models=LocalModel(speed=1000.0)))
    quote = replay.attempts[0]
    assert quote.verdict == "different"  # a new time and a new draw
    assert quote.output is not None and quote.output["text"] == run.attempts[0].output["text"]  # type: ignore[index]


def test_a_changed_model_prompt_is_flagged_not_served_a_stale_answer() -> None:
    async def reworded(ctx: StepContext) -> dict[str, Any]:
        ctx.now()
        ctx.random()
        await ctx.model(ModelRequest.of("severity", f"CLAIM {ctx.input['claim']}"))
        return {}

    run = recorded_run(execute(wf(), INPUT))
    changed = dataclasses.replace(wf(), steps=(Step("quote", reworded), wf().steps[1]))
    replay = asyncio.run(replay_run(run, changed))
    first = replay.attempts[0]
    assert first.verdict == "new failure" and first.error is not None
    assert first.error["type"] == "NonDeterministicCall" and "another request" in first.error["message"]


@pytest.mark.parametrize(
    ("was_output", "was_error", "now_output", "now_error", "verdict"),
    [
        ({"a": 1}, None, {"a": 1}, None, "same"),
        ({"a": 1}, None, {"a": 2}, None, "different"),
        (None, {"type": "E", "message": "m"}, None, {"type": "E", "message": "m"}, "failure reproduced"),
        (None, {"type": "E", "message": "m"}, {"a": 1}, None, "different"),
        ({"a": 1}, None, None, {"type": "E", "message": "m"}, "new failure"),
        (None, {"type": "E", "message": "m"}, None, {"type": "E", "message": "other"}, "new failure"),
    ],
)
def test_verdicts(was_output: Any, was_error: Any, now_output: Any, now_error: Any, verdict: str) -> None:
    from processors.engine.replay import RecordedAttempt

    recorded = RecordedAttempt("s", "run", 1, {}, output=was_output, error=was_error)
    assert compare(recorded, now_output, now_error).verdict == verdict


def test_output_diff_by_run() -> None:
    old: dict[str, dict[str, Any]] = {"r1": {"q": "a", "t": 1}, "r2": {"q": "b", "t": 1}, "r3": {"q": "c"}}
    new: dict[str, dict[str, Any]] = {"r1": {"q": "a", "t": 2}, "r2": {"q": "x", "t": 2}, "r4": {"q": "d"}}
    diffs = {d.run_id: d for d in diff_outputs(old, new, ignore=frozenset({"t"}))}
    assert {r: d.kind for r, d in diffs.items()} == {"r1": "same", "r2": "changed", "r3": "missing", "r4": "new"}
    assert diffs["r2"].changes == {"q": ("b", "x")}


def test_timers_fire_in_the_in_memory_harness() -> None:
    # The harness itself: the second attempt of `call` came from a timer, with its due time as event time.
    journal = execute(wf(), INPUT)
    waits = [json.loads(e.detail_json or "{}") for e in journal if e.kind.value == "STEP_RETRY_WAITING"]
    scheduled = [e for e in journal if e.kind.value == "STEP_SCHEDULED" and e.step == "call" and e.attempt == 2]
    assert len(waits) == 1 and scheduled[0].at_ms == waits[0]["due_at_ms"]
    assert isinstance(TimerFired("run-1", "call", "run", 1, 5), TimerFired)
