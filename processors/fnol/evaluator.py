"""The evaluator: gates a claim's decision before it leaves, and holds the run to its budgets.

Deterministic gates (policy in force, reserve within 0..limit, documents
where the severity needs them, no personal data in the outputs, latency and
cost within the tenant's budget, citations present) and one LLM-judge rubric
gate through the model client. The gates on auto-routing (in force,
citations) pass by nature when the route already sent the claim to review. A
failed gate sends an auto-routed claim to human review with its reason; see
``processors.fnol.workflow.decision``. Each gate names the span it judges, so
a trace can put its mark on that row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from connectors.pii import EMAIL, PHONE, UK_PLATE
from processors.engine.workflow import StepContext
from processors.fnol.budgets import Budget, budget_for
from processors.models import ModelRequest, ModelResponse

NEEDS_DOCUMENTS = {"MEDIUM", "HIGH"}


@dataclass(frozen=True)
class Gate:
    """One check of the decision: its name, outcome, why, and the span it judges."""

    name: str
    passed: bool
    reason: str
    span: str


def usage_of(response: ModelResponse | None) -> dict[str, Any]:
    if response is None:
        return {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "model": ""}
    return {
        "tokens_in": response.tokens_in,
        "tokens_out": response.tokens_out,
        "cost_usd": response.cost_usd,
        "model": response.model,
    }


def total_usage(outputs: Mapping[str, Mapping[str, Any]], *more: Mapping[str, Any]) -> dict[str, Any]:
    """Tokens and cost summed over the steps' ``usage`` (and any extra usage dicts)."""
    usages = [o.get("usage") or {} for o in outputs.values()] + list(more)
    return {
        "tokens_in": sum(int(u.get("tokens_in", 0)) for u in usages),
        "tokens_out": sum(int(u.get("tokens_out", 0)) for u in usages),
        "cost_usd": round(sum(float(u.get("cost_usd", 0.0)) for u in usages), 6),
    }


def _personal_data(value: Any) -> list[str]:
    text = json.dumps(value, ensure_ascii=False)
    found = []
    for kind, pattern in (("email", EMAIL), ("phone", PHONE), ("plate", UK_PLATE)):
        if pattern.search(text):
            found.append(kind)
    return found


def gates(
    report: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    latency_ms: float,
    cost_usd: float,
    budget: Budget,
    verdict: Mapping[str, Any] | None,
) -> list[Gate]:
    """Every gate's outcome for a decision (pure: the same facts give the same gates)."""
    policy, sev, routed = outputs["policy_check"], outputs["severity_reserve"], outputs["route"]
    auto = routed["status"] == "ROUTED"
    reserve, limit = float(sev["reserve"]), float(policy.get("limit") or 0.0)
    documents = list(routed.get("documents_requested", []))
    leaks = _personal_data(outputs)
    out = [
        Gate(
            "policy_in_force",
            not auto or bool(policy["in_force"]),
            "policy in force on the loss date" if policy["in_force"] else "auto-routed on a policy not in force",
            "retrieval.policy",
        ),
        Gate(
            "reserve_within_limit",
            0.0 <= reserve <= limit or (reserve == 0.0 and not policy["covered"]),
            f"reserve {reserve:,.0f} within 0..{limit:,.0f}" if reserve <= limit else f"reserve {reserve:,.0f} exceeds limit {limit:,.0f}",
            "reasoner.severity",
        ),
        Gate(
            "documents_requested",
            sev["severity"] not in NEEDS_DOCUMENTS or bool(documents),
            f"{len(documents)} document(s) requested for {sev['severity']} severity"
            if documents or sev["severity"] not in NEEDS_DOCUMENTS
            else f"no documents requested for {sev['severity']} severity",
            "tool.route",
        ),
        Gate(
            "no_personal_data",
            not leaks,
            "no personal data in the outputs" if not leaks else f"personal data in the outputs: {', '.join(leaks)}",
            "tool.route",
        ),
        Gate(
            "latency_within_budget",
            latency_ms <= budget.latency_s * 1000,
            f"latency {latency_ms / 1000:.2f} s" + (" within" if latency_ms <= budget.latency_s * 1000 else " over")
            + f" budget {budget.latency_s:.2f} s",
            "orchestrator.run",
        ),
        Gate(
            "cost_within_budget",
            cost_usd <= budget.cost_usd,
            f"cost ${cost_usd:.4f}" + (" within" if cost_usd <= budget.cost_usd else " over")
            + f" budget ${budget.cost_usd:.3f}",
            "orchestrator.run",
        ),
        Gate(
            "citations_present",
            not auto or bool(policy.get("citations")),
            f"{len(policy.get('citations') or [])} policy clause(s) cited" if policy.get("citations") else "no citation",
            "retrieval.policy",
        ),
    ]
    if verdict is not None:
        passed = bool(verdict.get("pass"))
        why = "; ".join(str(r) for r in verdict.get("reasons", [])) or "no reason given"
        out.append(Gate("judge_rubric", passed, f"judge score {verdict.get('score')}: {why}", "evaluator"))
    return out


def _judge_prompt(report: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any]]) -> str:
    policy, sev, routed = outputs["policy_check"], outputs["severity_reserve"], outputs["route"]
    cited = ", ".join(c.get("citation", "") for c in policy.get("citations") or [])
    return (
        "Rate this first-notice-of-loss decision against the rubric: grounded in the policy, reserve proportionate, "
        "documents fit the loss, queue fits the severity.\n"
        f"loss type: {report['loss_type']}; estimated amount: {report['estimated_amount']}\n"
        f"policy in force: {'yes' if policy['in_force'] else 'no'}; covered: {'yes' if policy['covered'] else 'no'}; "
        f"limit {policy.get('limit')}; deductible {policy.get('deductible')}; clauses: {cited or 'none'}\n"
        f"severity: {sev['severity']}; reserve: {sev['reserve']}\n"
        f"decision: {routed['status']} to {routed['queue']}; documents: {', '.join(routed['documents_requested'])}"
    )


async def evaluate(ctx: StepContext) -> dict[str, Any]:
    """The evaluator step: the judge's verdict through the model, then every gate, with the run's budget figures."""
    report, outputs = ctx.input, ctx.deps
    response = await ctx.model(ModelRequest.of("judge", _judge_prompt(report, outputs), timeout_s=5.0))
    try:
        verdict: dict[str, Any] | None = json.loads(response.text)
    except json.JSONDecodeError:
        verdict = {"pass": False, "score": 0.0, "reasons": ["the judge's answer was not JSON"]}
    own = usage_of(response)
    usage = total_usage(outputs, own)
    latency_ms = (ctx.now().timestamp() * 1000) - ctx.run_started_at_ms
    budget = budget_for(str(report["tenant_id"]))
    checked = gates(report, outputs, latency_ms, float(usage["cost_usd"]), budget, verdict)
    passed = sum(1 for g in checked if g.passed)
    return {
        "gates": [asdict(g) for g in checked],
        "passed": passed,
        "total": len(checked),
        "budget": {
            "latency_ms": round(latency_ms),
            "latency_budget_ms": budget.latency_s * 1000,
            "cost_usd": usage["cost_usd"],
            "cost_budget_usd": budget.cost_usd,
            "tokens": usage["tokens_in"] + usage["tokens_out"],
        },
        "usage": own,
    }
