"""The FNOL tools on their own (no broker): retrieval-based policy check, damage, fraud signals, reserve,
personal-data scan, judge parsing, replay determinism; and the 60 samples simulated in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from processors import pii
from processors.engine import RunResult, StepContext
from processors.engine.execute import run_step
from processors.engine.inputs import Accepted, parse_lines
from processors.engine.recorder import Recorder
from processors.fnol import FNOL, history, tools
from processors.fnol.evaluator import evaluate, parse_verdict, personal_data
from processors.fnol.retrieval import default_retriever
from processors.fnol.simulation import FNOL_PROFILES, FNOL_SIMULATION
from processors.fnol.workflow import decision
from processors.models import LocalModel, ModelRequest, ModelResponse
from schemas.models import StepCommand, StepResult
from tests.unit.test_fnol_evaluator import SAMPLES, outputs_of, simulate

RAW = [json.loads(line) for line in SAMPLES]


def tokenised(raw: dict[str, Any]) -> dict[str, Any]:
    good = next(iter(parse_lines(FNOL, [json.dumps(raw)])))
    assert isinstance(good, Accepted)
    data: dict[str, Any] = dict(good.record)
    return data


def sample(claim_id: str, **changes: Any) -> dict[str, Any]:
    raw = next(r for r in RAW if r["claim_id"] == claim_id)
    return tokenised({**raw, **changes})


def run(handler: Any, report: dict[str, Any], deps: dict[str, Any] | None = None, **ctx: Any) -> dict[str, Any]:
    context = StepContext(
        run_id="r",
        workflow="fnol",
        step="s",
        attempt=1,
        input=report,
        deps=deps or {},
        recorder=ctx.pop("recorder", None) or Recorder(models=LocalModel(speed=1000.0, simulation=FNOL_SIMULATION)),
        **ctx,
    )
    out = handler(context)
    result: dict[str, Any] = asyncio.run(out) if asyncio.iscoroutine(out) else out
    return result


# ---------------------------------------------------------------- policy check: retrieval agrees with the register


@pytest.mark.parametrize("raw", RAW, ids=[r["claim_id"] for r in RAW])
def test_the_policy_check_tool_agrees_with_the_register_on_every_sample(raw: dict[str, Any]) -> None:
    out = run(tools.policy_check, tokenised(raw))
    record = default_retriever().register.get(raw["policy_number"])
    assert record is not None and out["found"]
    assert out["in_force"] == record.in_force_on(date.fromisoformat(raw["loss_date"]))
    entry = record.schedule.get(raw["loss_type"])
    if out["covered"]:
        assert entry is not None and (out["limit"], out["deductible"]) == (entry.limit, entry.deductible)
        roles = {c["role"] for c in out["citations"]}
        assert {"coverage", "deductible", "limit"} <= roles
        for c in out["citations"]:
            assert c["doc_id"] == record.product and c["section"] and c["clause"]
            assert c["citation"].startswith(f"{record.product} §{c['clause']}")
        assert out["passages"] and all(p["citation"].startswith(record.product) for p in out["passages"])
    assert out["usage"]["tokens_in"] > 0 and out["usage"]["cost_usd"] > 0 and out["usage"]["model"]


def test_an_unknown_policy_goes_to_coverage_review_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    report = sample("CLM-100001", policy_number="POL-999991")
    policy = run(tools.policy_check, report)
    assert not policy["found"] and not policy["in_force"] and policy["citations"] == []
    output, _ = simulate(json.dumps({**RAW[0], "policy_number": "POL-999991"}))
    assert output["status"] == "REVIEW" and output["queue"] == "coverage_review"
    assert output["reasons"] == ["policy POL-999991 is not in the policy register"]
    # Opt-in for generated claims: the register's own rule answers for unknown numbers.
    monkeypatch.setenv(tools.SYNTHESISE_ENV, "1")
    synthesised = run(tools.policy_check, report)
    assert synthesised["found"] and synthesised["in_force"] and synthesised["covered"] and synthesised["citations"]


# ---------------------------------------------------------------- damage, fraud, severity and reserve


def test_damage_is_assessed_from_the_photo_labels_with_a_floor_under_a_low_estimate() -> None:
    flooded = sample("CLM-100059")  # three photos of a flooded room, estimated at 450
    out = run(tools.damage_assessment, flooded)
    assert out["severe_labels"] == ["flooded_room"] and out["photo_count"] == 3
    assert out["photo_floor"] == tools.LABEL_COST["flooded_room"] + tools.LABEL_COST["water_stain"]
    assert out["assessed_amount"] == out["photo_floor"] > float(flooded["estimated_amount"])
    assert out["usage"]["tokens_out"] > 0
    none = run(tools.damage_assessment, sample("CLM-100001"))  # no photos: the estimate stands
    assert none["assessed_amount"] == 6400.0 and none["photo_floor"] == 0.0 and none["damage_score"] == 0.15


def test_fraud_signals_come_from_the_report_the_history_table_and_the_register() -> None:
    clean, prior = tools.fraud_signals(sample("CLM-100001"))
    assert clean == [] and prior == {"policy": 1, "claimant": 0}
    late = sample("CLM-100001", loss_date="2026-09-01")
    assert "late_notification" in tools.fraud_signals(late)[0]
    inception = default_retriever().register.get(RAW[0]["policy_number"]).inception  # type: ignore[union-attr]
    soon = sample("CLM-100001", loss_date=inception.isoformat(), reported_at=f"{inception.isoformat()}T18:00:00Z")
    assert "loss_soon_after_inception" in tools.fraud_signals(soon)[0]
    contradicted = sample(
        "CLM-100004", photos=[{"uri": "s3://claims-photos/x/0.jpg", "labels": ["front_bumper_dent"]}]
    )  # a kitchen fire, photos of a dented bumper
    assert "description_contradicts_photos" in tools.fraud_signals(contradicted)[0]
    # The history table: a claimant with 4 prior claims, a theft on a policy with 2.
    frequent = next(t for t, n in history.table()["claimants"].items() if n >= tools.FREQUENT_CLAIMANT)
    raw = next(r for r in RAW if pii.token("name", r["claimant"]["name"], r["tenant_id"]) == frequent)
    assert "frequent_claimant" in tools.fraud_signals(tokenised(raw))[0]
    repeat = next(p for p, n in history.table()["policies"].items() if n >= tools.REPEAT_THEFT)
    theft = sample("CLM-100001", policy_number=repeat)
    assert "repeat_theft_history" in tools.fraud_signals(theft)[0]


def test_fraud_check_reports_its_signals_score_history_and_usage() -> None:
    out = run(tools.fraud_check, sample("CLM-100057"))
    assert out["signals"] == ["high_amount_without_photos", "repeat_theft_history"]
    assert out["refer_to_siu"] and out["fraud_score"] >= 0.4 and out["prior_claims"]["policy"] >= 2
    assert out["usage"]["tokens_in"] > 0


@pytest.mark.parametrize(
    ("covered", "limit", "deductible", "amount", "reserve"),
    [
        (True, 25_000.0, 500.0, 5_640.0, 5_100.0),  # damage less deductible, in round hundreds
        (True, 25_000.0, 500.0, 400.0, 0.0),  # within the deductible
        (True, 25_050.0, 0.0, 90_000.0, 25_000.0),  # capped at the limit, rounded down to stay within it
        (False, 25_000.0, 500.0, 5_640.0, 0.0),  # not covered
    ],
)
def test_the_reserve_is_the_damage_less_the_deductible_within_0_and_the_limit(
    covered: bool, limit: float, deductible: float, amount: float, reserve: float
) -> None:
    assert tools.reserve_of({"covered": covered, "limit": limit, "deductible": deductible}, amount) == reserve


# ---------------------------------------------------------------- evaluator helpers


def test_the_personal_data_scan_finds_raw_values_and_ignores_dates_tokens_and_numbers() -> None:
    clean = {
        "reasons": ["policy lapsed on 2026-09-12, before the loss on 2026-11-03"],
        "at": "2026-11-03T09:01:00Z",
        "to": "pii_0123456789abcdef",
        "name_token": "pii_0123456789abcdef",
        "decided_at_ms": 1795820000000,
        "decision_id": "8ac9660b-6786-5916-b954-a4fe65b867bf",
        "text": "My car [plate:pii_0123456789abcdef] was stolen. I am [name:pii_0123456789abcdef].",
    }
    assert personal_data(clean) == []
    assert personal_data({"note": "write to jane.doe@example.com"}) == ["email"]
    assert personal_data({"note": "call +44 7700 944289"}) == ["phone"]
    assert personal_data({"note": "car EF79 EFK"}) == ["plate"]
    assert personal_data({"note": "I am Bilal Garcia"}) == ["name"]
    assert personal_data({"claimant": {"name": "Bilal"}}) == ["name"]
    assert personal_data({"vehicle": {"plate": "XYZ"}, "email": "someone"}) == ["email", "plate"]
    assert personal_data({"gates": [{"name": "policy_in_force"}], "claimant": {"name": "pii_0123"}}) == []


@pytest.mark.parametrize(
    ("text", "passed", "score"),
    [
        ('{"pass": true, "score": 0.91, "reasons": ["ok"]}', True, 0.91),
        ('Here it is:\n```json\n{"pass": false, "score": 0.4, "reasons": ["reserve unsupported"]}\n```', False, 0.4),
        ('{"pass": "true", "score": "high"}', True, None),
        ("I think it is fine.", False, 0.0),
        ("[1, 2]", False, 0.0),
        ('{"score": 0.9}', False, 0.0),
    ],
)
def test_the_judge_verdict_is_parsed_and_an_unreadable_one_never_passes(
    text: str, passed: bool, score: float | None
) -> None:
    verdict = parse_verdict(text)
    assert verdict["pass"] is passed and verdict["score"] == score and isinstance(verdict["reasons"], list)


# ---------------------------------------------------------------- determinism and the latency gate on a recorded clock


def recorded_run(line: str) -> list[tuple[StepCommand, StepResult]]:
    log: list[tuple[StepCommand, StepResult]] = []
    simulate(line, log=log)
    return log


def test_every_tool_recomputes_its_output_from_the_recorded_calls() -> None:
    log = recorded_run(SAMPLES[0])
    assert {c.step for c, _ in log} == {s.name for s in FNOL.steps}
    for command, result in log:
        recorded = json.loads(result.recorded_json) if result.recorded_json else []
        again = asyncio.run(run_step({FNOL.name: FNOL}, command, "w", recorder=Recorder(recorded=recorded)))
        assert again.error is None and again.output_json == result.output_json, command.step
        assert again.recorded_json == result.recorded_json


def test_a_fraud_outage_replays_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_FNOL_FRAUD_FAILURE_RATE", "0.6")
    log = recorded_run(SAMPLES[0])
    attempts = [(c, r) for c, r in log if c.step == "fraud_check"]
    assert any(r.error for _, r in attempts) or len(attempts) == 1
    for command, result in log:
        recorded = json.loads(result.recorded_json) if result.recorded_json else []
        again = asyncio.run(run_step({FNOL.name: FNOL}, command, "w", recorder=Recorder(recorded=recorded)))
        assert again.output_json == result.output_json
        assert (again.error.type if again.error else None) == (result.error.type if result.error else None)


def test_the_latency_gate_reads_the_recorded_clock_against_the_run_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_FNOL_BUDGETS", raising=False)  # the shipped budgets: 3.00 s for acme
    log = recorded_run(SAMPLES[0])
    command, result = next((c, r) for c, r in log if c.step == "evaluator")
    payload = json.loads(command.input_json)
    started = int(payload["run"]["started_at_ms"])
    calls = json.loads(result.recorded_json or "[]")
    assert [c["call"] for c in calls] == ["model", "now"]
    calls[1]["value"] = started + 3_410  # the evaluator ran 3.41 s after the run began
    ctx = StepContext(
        run_id=command.run_id,
        workflow="fnol",
        step="evaluator",
        attempt=1,
        input=payload["input"],
        deps=payload["deps"],
        run_started_at_ms=started,
        recorder=Recorder(recorded=calls),
    )
    evaluation = asyncio.run(evaluate(ctx))
    failed = [g for g in evaluation["gates"] if not g["passed"]]
    assert [g["name"] for g in failed] == ["latency_within_budget"]
    assert failed[0]["reason"] == "latency 3.41 s over budget 3.00 s" and failed[0]["span"] == "orchestrator.run"
    assert evaluation["budget"]["latency_ms"] == 3_410 and evaluation["budget"]["latency_budget_ms"] == 3_000
    outputs = {**payload["deps"], "evaluator": evaluation}
    d = decision(RunResult(command.run_id, payload["input"], outputs, 1, "id", 0))
    assert d["status"] == "REVIEW" and d["queue"] == "human_review"
    assert d["reasons"] == ["gate latency_within_budget failed: latency 3.41 s over budget 3.00 s", "medium severity"]


def test_a_tenant_over_its_cost_budget_is_reviewed_and_others_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"acme": {"cost_usd": 0.01}}')
    acme, _ = simulate(SAMPLES[0])
    assert acme["tenant_id"] == "acme" and acme["status"] == "REVIEW" and acme["queue"] == "human_review"
    assert acme["reasons"][0].startswith("gate cost_within_budget failed: cost $0.01")
    assert acme["reasons"][0].endswith(" over budget $0.010")
    globex, _ = simulate(SAMPLES[2])
    assert globex["tenant_id"] == "globex" and globex["status"] == "ROUTED"


class DoubtfulJudge:
    """The local model, except that the judge fails every decision."""

    def __init__(self) -> None:
        self.inner = LocalModel(speed=1000.0, simulation=FNOL_SIMULATION)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        response = await self.inner.complete(request)
        if request.purpose != "judge":
            return response
        verdict = {"pass": False, "score": 0.35, "reasons": ["reserve unsupported by the damage"]}
        return dataclasses.replace(response, text=json.dumps(verdict))


def test_a_judge_that_fails_the_rubric_sends_the_claim_to_review_with_its_reasons() -> None:
    output, state = simulate(SAMPLES[0], models=DoubtfulJudge())
    assert output["status"] == "REVIEW" and output["queue"] == "human_review"
    assert output["reasons"][0] == "gate judge_rubric failed: judge score 0.35: reserve unsupported by the damage"
    assert outputs_of(state)["evaluator"]["passed"] == 7


# ---------------------------------------------------------------- whole runs: totals and the 60 samples


STEP_PURPOSE = {
    "plan": "plan",
    "policy_check": "retrieval",
    "damage_assessment": "vision",
    "fraud_check": "fraud",
    "severity_reserve": "severity",
    "evaluator": "judge",
}


def test_spans_and_the_critical_path_of_the_simulated_model_fit_the_budget() -> None:
    spans = {s.name: s.span_name for s in FNOL.steps}
    assert spans == {
        "plan": "orchestrator.plan",
        "policy_check": "retrieval.policy",
        "damage_assessment": "tool.vision",
        "fraud_check": "tool.fraud_check",
        "severity_reserve": "reasoner.severity",
        "route": "tool.route",
        "evaluator": "evaluator",
        "request_documents": "tool.documents",
    }
    finish: dict[str, float] = {}
    for step in FNOL.steps:  # declared in topological order
        own = FNOL_PROFILES[STEP_PURPOSE[step.name]].latency_ms if step.name in STEP_PURPOSE else 0.0
        finish[step.name] = max((finish[d] for d in step.after), default=0.0) + own
        assert step.timeout_s <= 5.0
    assert finish["request_documents"] == 80 + 1_100 + 640 + 250  # plan, vision, severity, judge
    assert FNOL.step("request_documents").after == ("route", "evaluator")


@pytest.fixture(scope="module")
def all_samples() -> Iterator[list[tuple[dict[str, Any], dict[str, Any]]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DURABLE_FNOL_BUDGETS", raising=False)  # the shipped budgets, not the integration tests' ones
        yield [(out, outputs_of(state)) for out, state in (simulate(line) for line in SAMPLES)]


def test_the_60_samples_give_a_sensible_mix_of_decisions(all_samples: list[tuple[dict[str, Any], Any]]) -> None:
    decisions = [d for d, _ in all_samples]
    queues = Counter(d["queue"] for d in decisions)
    statuses = Counter(d["status"] for d in decisions)
    assert set(statuses) == {"ROUTED", "REVIEW", "ON_HOLD"} and statuses["ROUTED"] >= 30 and statuses["REVIEW"] >= 6
    assert {"fast_track_glass", "fast_track", "standard_claims", "complex_claims", "coverage_review"} <= set(queues)
    # The two claimants who left no email or phone: on hold, route and reserve kept, nothing released.
    assert sorted(d["claim_id"] for d in decisions if d["status"] == "ON_HOLD") == ["CLM-100005", "CLM-100043"]
    assert "manual_handling" not in queues
    assert "human_review" not in queues  # no gate fails and no budget is blown on the samples at default budgets
    for d in decisions:
        assert d["severity"] in {"LOW", "MEDIUM", "HIGH"} and d["reserve"] >= 0 and d["reasons"] and d["queue"]
        assert d["reserve"] % 100 == 0
        assert d["documents_requested"] or d["status"] == "ON_HOLD"
        assert not personal_data(d)
    held, outputs = next((d, o) for d, o in all_samples if d["claim_id"] == "CLM-100005")
    assert held["reasons"][0].startswith("documents not requested: ClaimantUnreachable: claimant of CLM-100005")
    assert held["reserve"] == outputs["severity_reserve"]["reserve"] > 0
    assert f"reserve of {held['reserve']:,.0f} {held['currency']} held" in held["reasons"][1]
    assert "fnol:acme:CLM-100005/request_documents/run/1" in held["reasons"][1]
    assert held["queue"] == outputs["route"]["queue"] and held["documents_requested"] == []


def test_every_sample_run_reports_usage_and_totals_near_the_seed(all_samples: list[tuple[Any, Any]]) -> None:
    tokens, costs = [], []
    for _, outputs in all_samples:
        for name, out in outputs.items():
            assert set(out["usage"]) == {"tokens_in", "tokens_out", "cost_usd", "model"}, name
        evaluation = outputs["evaluator"]
        assert evaluation["passed"] == evaluation["total"] == 8
        assert all(g["span"] for g in evaluation["gates"])
        tokens.append(evaluation["budget"]["tokens"])
        costs.append(evaluation["budget"]["cost_usd"])
        limit = outputs["policy_check"]["limit"]
        assert 0 <= outputs["severity_reserve"]["reserve"] <= limit
    assert all(2_210 * 0.85 <= t <= 2_210 * 1.15 for t in tokens)
    assert all(0.018 * 0.85 <= c <= 0.018 * 1.15 for c in costs)
    assert abs(sum(tokens) / len(tokens) - 2_210) < 2_210 * 0.05
