"""Workflow settings: captured with every attempt, served back on replay, differences named (no broker)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from processors.engine import RetryPolicy
from processors.engine.execute import run_step
from processors.engine.recorder import Recorder
from processors.engine.replay import RecordedAttempt, RecordedRun, setting_differences
from processors.engine.settings import Setting, differences
from processors.engine.snapshot import capture, fingerprint
from processors.fnol import FNOL
from processors.fnol.workflow import fnol_workflow
from schemas.models import StepCommand, StepResult
from tests.unit.test_fnol_evaluator import SAMPLES, simulate


def recorded_under(monkeypatch: pytest.MonkeyPatch, rate: str) -> list[tuple[StepCommand, StepResult]]:
    monkeypatch.setenv("DURABLE_FNOL_FRAUD_FAILURE_RATE", rate)
    log: list[tuple[StepCommand, StepResult]] = []
    simulate(SAMPLES[0], log=log)
    monkeypatch.delenv("DURABLE_FNOL_FRAUD_FAILURE_RATE")  # the replaying "machine" has no such variable
    return log


def replayed(command: StepCommand, result: StepResult, *, with_settings: bool) -> StepResult:
    recorded = json.loads(result.recorded_json or "[]")
    settings = json.loads(result.settings_json or "{}") if with_settings else None
    return asyncio.run(
        run_step({FNOL.name: FNOL}, command, "replay", recorder=Recorder(recorded=recorded), settings=settings)
    )


def test_every_attempt_records_the_settings_it_ran_under(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"acme": {"latency_s": 9}}')
    log = recorded_under(monkeypatch, "0.3")
    for _, result in log:
        assert result.settings_json is not None
        settings = json.loads(result.settings_json)
        assert settings["fraud_failure_rate"] == 0.3
        assert settings["budgets"] == '{"acme": {"latency_s": 9}}'
        assert settings["model.name"] == "local-sim-1" and settings["model.price"]["output_per_mtok"] == 15.0
        assert settings["workflow.fingerprint"] == fingerprint(FNOL) and settings["workflow.version"] == FNOL.version


def test_a_run_recorded_at_a_fraud_failure_rate_replays_the_same_without_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = recorded_under(monkeypatch, "0.3")
    fraud = [(c, r) for c, r in log if c.step == "fraud_check"]
    for command, result in log:
        again = replayed(command, result, with_settings=True)
        assert again.output_json == result.output_json, command.step
        assert (again.error and (again.error.type, again.error.message)) == (
            result.error and (result.error.type, result.error.message)
        ), command.step
        assert again.recorded_json == result.recorded_json
    # Without the recorded settings the fraud step would not draw its recorded random number: the bug of issue 13.
    command, result = fraud[0]
    broken = replayed(command, result, with_settings=False)
    assert broken.error is not None and broken.error.type == "NonDeterministicCall"


def test_a_bound_setting_is_recorded_and_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0.9")
    demo = fnol_workflow(fraud_failure_rate=0.3)
    assert capture(demo)["fraud_failure_rate"] == 0.3
    assert capture(FNOL)["fraud_failure_rate"] == 0.9


def test_differences_name_each_setting_and_say_which_are_code() -> None:
    here = capture(FNOL, {})
    recorded = {**here, "fraud_failure_rate": 0.3, "workflow.fingerprint": "0123456789abcdef"}
    found = {d.name: d for d in differences([recorded], here)}
    assert set(found) == {"fraud_failure_rate", "workflow.fingerprint"}
    assert found["fraud_failure_rate"].describe() == "fraud_failure_rate: recorded 0.3, here 0.0"
    assert found["workflow.fingerprint"].identity and not found["fraud_failure_rate"].identity
    older = {k: v for k, v in here.items() if k != "budgets"}  # recorded before the workflow declared it
    [missing] = differences([older], here)
    assert missing.name == "budgets" and missing.missing and "not recorded" in missing.describe()


def test_replay_lists_differences_only_when_the_journal_recorded_settings() -> None:
    here = capture(FNOL)
    attempt = RecordedAttempt("plan", "run", 1, {}, output={}, settings={**here, "fraud_failure_rate": 0.3})
    run = RecordedRun("r", "fnol", {}, [attempt], "COMPLETED", {}, 1)
    assert run.settings_recorded
    assert [d.name for d in setting_differences(run, FNOL)] == ["fraud_failure_rate"]
    old = RecordedRun("r", "fnol", {}, [dataclasses.replace(attempt, settings=None)], "COMPLETED", {}, 1)
    assert not old.settings_recorded and setting_differences(old, FNOL) == []
    exported = RecordedRun.from_json(run.to_json())
    assert exported.attempts[0].settings == attempt.settings, "a run export carries its settings"


def test_model_settings_never_record_credentials() -> None:
    env = {
        "DURABLE_MODEL_BASE_URL": "https://user:hunter2@models.example:8443/v1?token=abc",
        "DURABLE_MODEL_NAME": "gpt-4o-mini",
        "DURABLE_MODEL_API_KEY": "sk-secret",
    }
    snapshot = capture(FNOL, env)
    assert snapshot["model.endpoint"] == "https://models.example:8443/v1"
    assert snapshot["model.name"] == "gpt-4o-mini" and snapshot["model.price"]["input_per_mtok"] == 0.15
    assert "hunter2" not in json.dumps(snapshot) and "sk-secret" not in json.dumps(snapshot)


def test_the_fingerprint_follows_the_declaration() -> None:
    assert fingerprint(FNOL) == fingerprint(fnol_workflow())
    plan = FNOL.steps[0]
    changed = dataclasses.replace(
        FNOL, steps=(dataclasses.replace(plan, retry=RetryPolicy(max_attempts=9)), *FNOL.steps[1:])
    )
    assert fingerprint(changed) != fingerprint(FNOL)


def test_setting_names_are_unique_and_leave_the_engines_prefixes_alone() -> None:
    with pytest.raises(ValueError, match="setting names"):
        dataclasses.replace(FNOL, settings=(Setting.fixed("a", 1), Setting.fixed("a", 2)))
    with pytest.raises(ValueError, match="setting names"):
        dataclasses.replace(FNOL, settings=(Setting.fixed("model.name", "x"),))
