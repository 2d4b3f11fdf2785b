"""The FNOL evaluator's gates and budgets, and a whole FNOL run simulated in memory."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import deque
from typing import Any

import pytest

from processors.engine import RunResult
from processors.engine.execute import run_step
from processors.engine.inputs import Accepted, parse_lines
from processors.engine.transition import RunRequested, StepFinished, timers, transition
from processors.fnol import FNOL
from processors.fnol.budgets import Budget, BudgetConfigError, budget_for
from processors.fnol.evaluator import gates
from processors.fnol.simulation import FNOL_SIMULATION
from processors.fnol.workflow import decision
from processors.models import LocalModel, ModelClient
from schemas.models import RunState, StepCommand, StepResult
from tests.conftest import ROOT

SAMPLES = (ROOT / "processors/fnol/samples/fnol.jsonl").read_text().splitlines()


def simulate(
    line: str, *, models: ModelClient | None = None, log: list[tuple[StepCommand, StepResult]] | None = None
) -> tuple[dict[str, Any], RunState]:
    """One FNOL run to its end in memory (transition + run_step, timers at once): its output and state.

    ``log``, if given, receives every step command with its result (recorded calls included).
    """
    good = next(iter(parse_lines(FNOL, [line])))
    assert isinstance(good, Accepted)
    models = models or LocalModel(speed=1000.0, simulation=FNOL_SIMULATION)
    state: RunState | None = None
    started = int(time.time() * 1000)  # the latency gate reads the recorded clock against the run's start
    events: deque[Any] = deque([RunRequested(good.run_id, dict(good.record), at_ms=started)])
    output: dict[str, Any] | None = None
    while events:
        t = transition(FNOL, state, events.popleft())
        state = t.state
        for out in t.outgoing:
            if isinstance(out.record, StepCommand):
                result = asyncio.run(run_step({FNOL.name: FNOL}, out.record, "w", models=models))
                if log is not None:
                    log.append((out.record, result))
                events.append(StepFinished(result, result.finished_at_ms))
            elif out.kind == "output":
                output = out.record  # type: ignore[assignment]
        if state is not None and not events:
            events.extend(timers(state))
    assert output is not None and state is not None
    return output, state


def outputs_of(state: RunState) -> dict[str, Any]:
    return {s.name: json.loads(s.output_json) for s in state.steps if s.output_json}


@pytest.fixture(scope="module")
def clean_run(monkeypatch_module: pytest.MonkeyPatch) -> tuple[dict[str, Any], RunState]:
    # Claim 1: a theft on a policy in force, routed to standard claims.
    return simulate(SAMPLES[0])


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DURABLE_FNOL_BUDGETS", '{"default": {"latency_s": 3.0}}')
        yield mp


def test_a_clean_claim_is_routed_with_every_gate_passed(clean_run: tuple[dict[str, Any], RunState]) -> None:
    output, state = clean_run
    assert output["status"] == "ROUTED" and output["queue"] == "standard_claims"
    evaluation = outputs_of(state)["evaluator"]
    assert evaluation["passed"] == evaluation["total"] == 8
    assert {g["name"] for g in evaluation["gates"]} == {
        "policy_in_force",
        "reserve_within_limit",
        "documents_requested",
        "no_personal_data",
        "latency_within_budget",
        "cost_within_budget",
        "citations_present",
        "judge_rubric",
    }
    budget = evaluation["budget"]
    assert 2_210 * 0.85 <= budget["tokens"] <= 2_210 * 1.15  # near the seed's run
    assert 0.018 * 0.85 <= budget["cost_usd"] <= 0.018 * 1.15
    policy = outputs_of(state)["policy_check"]
    assert policy["citations"] and policy["citations"][0]["citation"].startswith("motor_comprehensive §")


FACTS = {
    "policy_check": {"in_force": True, "covered": True, "limit": 30_000.0, "citations": [{"citation": "m §2.2"}]},
    "severity_reserve": {"severity": "MEDIUM", "reserve": 5_600.0},
    "route": {"status": "ROUTED", "queue": "standard_claims", "documents_requested": ["police_report"]},
}
REPORT = {"loss_type": "auto_theft", "estimated_amount": 6400.0}
OK_VERDICT = {"pass": True, "score": 0.93, "reasons": ["consistent"]}


def failed(
    outputs: dict[str, Any], latency_ms: float = 1_000, cost: float = 0.018, verdict: Any = OK_VERDICT
) -> list[str]:
    return [g.name for g in gates(REPORT, outputs, latency_ms, cost, Budget(3.0, 0.025), verdict) if not g.passed]


def with_change(step: str, **changes: Any) -> dict[str, Any]:
    outputs = copy.deepcopy(FACTS)
    outputs[step].update(changes)
    return outputs


def test_the_reference_facts_pass_every_gate() -> None:
    assert failed(FACTS) == []


@pytest.mark.parametrize(
    ("outputs", "kwargs", "gate"),
    [
        (with_change("policy_check", in_force=False), {}, "policy_in_force"),
        (with_change("severity_reserve", reserve=45_000.0), {}, "reserve_within_limit"),
        (with_change("severity_reserve", reserve=-1.0), {}, "reserve_within_limit"),
        (with_change("route", documents_requested=[]), {}, "documents_requested"),
        (with_change("route", documents_requested=["call jane.doe@example.com"]), {}, "no_personal_data"),
        (FACTS, {"latency_ms": 3_410}, "latency_within_budget"),
        (FACTS, {"cost": 0.031}, "cost_within_budget"),
        (with_change("policy_check", citations=[]), {}, "citations_present"),
        (FACTS, {"verdict": {"pass": False, "score": 0.4, "reasons": ["reserve unsupported"]}}, "judge_rubric"),
    ],
)
def test_each_gate_fails_alone_and_sends_the_claim_to_review_with_its_reason(
    outputs: dict[str, Any], kwargs: dict[str, Any], gate: str
) -> None:
    assert failed(outputs, **kwargs) == [gate]
    checked = gates(
        REPORT,
        outputs,
        kwargs.get("latency_ms", 1_000),
        kwargs.get("cost", 0.018),
        Budget(3.0, 0.025),
        kwargs.get("verdict", OK_VERDICT),
    )
    evaluation = {"gates": [g.__dict__ for g in checked]}
    run = RunResult(
        "r",
        {"claim_id": "C", "tenant_id": "acme", "currency": "GBP"},
        {
            "route": {**outputs["route"], "severity": "MEDIUM", "reserve": 5_600.0, "reasons": ["medium severity"]},
            "evaluator": evaluation,
        },
        1,
        "id",
        0,
    )
    d = decision(run)
    assert d["status"] == "REVIEW" and d["queue"] == "human_review"
    assert d["reasons"][0].startswith(f"gate {gate} failed: ")


def test_budget_breaches_carry_their_figures() -> None:
    reasons = {g.name: g.reason for g in gates(REPORT, FACTS, 3_410, 0.031, Budget(3.0, 0.025), OK_VERDICT)}
    assert reasons["latency_within_budget"] == "latency 3.41 s over budget 3.00 s"
    assert reasons["cost_within_budget"] == "cost $0.031 over budget $0.025"


def test_gates_on_auto_routing_pass_when_the_claim_already_goes_to_review() -> None:
    lapsed = with_change("policy_check", in_force=False, covered=False, citations=[])
    lapsed["severity_reserve"]["reserve"] = 0.0
    lapsed["route"].update(status="REVIEW", queue="coverage_review")
    assert failed(lapsed) == []


def test_budgets_default_to_the_seed_and_are_set_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_FNOL_BUDGETS", raising=False)
    assert budget_for("acme") == Budget(3.0, 0.025)
    assert budget_for("globex") == Budget(3.5, 0.025)  # its own entry in budgets.json
    assert budget_for("unknown-tenant") == Budget(3.0, 0.025)
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"acme": {"latency_s": 2.5}, "default": {"cost_usd": 0.05}}')
    assert budget_for("acme") == Budget(2.5, 0.05)
    assert budget_for("globex") == Budget(3.5, 0.05)
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"default": {"latency_s": 9}}')  # an override's default wins
    assert budget_for("globex") == Budget(9.0, 0.025)


@pytest.mark.parametrize(
    "override",
    [
        "not json",
        "[1]",
        '{"acme": 3}',
        '{"acme": {"latency_s": -1}}',
        '{"acme": {"latency": 1}}',
        '{"a": {"cost_usd": true}}',
    ],
)
def test_a_malformed_budget_override_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, override: str) -> None:
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", override)
    with pytest.raises(BudgetConfigError, match="DURABLE_FNOL_BUDGETS"):
        budget_for("acme")


def test_a_run_over_its_latency_budget_is_reviewed_with_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"acme": {"latency_s": 0.0}}')
    output, _ = simulate(SAMPLES[0])
    assert output["status"] == "REVIEW" and output["queue"] == "human_review"
    assert "gate latency_within_budget failed: latency" in output["reasons"][0]
    assert "over budget 0.00 s" in output["reasons"][0]
