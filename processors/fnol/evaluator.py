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
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from processors import redaction
from processors.engine import Evaluation, Gate, StepContext
from processors.fnol.budgets import BUDGETS, Budget, budget_for
from processors.models import ModelRequest, ModelResponse

NEEDS_DOCUMENTS = {"MEDIUM", "HIGH"}
NO_USAGE: Mapping[str, Any] = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "model": ""}
JUDGE_TIMEOUT_S = 4.0  # the judge's call; the evaluator step has 5 s

# Dates, times and UUIDs are not phone numbers, though the phone pattern would take them.
_NOT_PERSONAL = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|"
    + r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
    re.IGNORECASE,
)
# A postcode alone is location, kept raw in the report on purpose; with a street it is an address, which counts.
_NOT_COUNTED = ("postcode",)
# Fields that carry personal data (under any key, or under claimant/vehicle): only tokens (pii_...) may appear.
_PERSONAL_KEYS = {"email", "phone", "plate", "claimant_name", "full_name"}
_PERSONAL_UNDER = {"claimant": {"name", "email", "phone"}, "vehicle": {"plate"}}


def usage_of(response: ModelResponse | None) -> dict[str, Any]:
    """A model call's tokens, cost and model, as tools report it (zeros for no call)."""
    if response is None:
        return dict(NO_USAGE)
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


def _strings(value: Any, parent: str = "", key: str = "") -> Iterator[tuple[str, str, str]]:
    """Every string in a JSON value, with its parent key and key (numbers are amounts, ids and times)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, key, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, parent, key)
    elif isinstance(value, str):
        yield parent, key, value


def personal_data(value: Any) -> list[str]:
    """The kinds of raw personal data in a JSON value (sorted, unique): what :mod:`processors.redaction` finds."""
    found: set[str] = set()
    for parent, key, text in _strings(value):
        field = key.lower()
        personal = field in _PERSONAL_KEYS or field in _PERSONAL_UNDER.get(parent.lower(), ())
        if personal and text and not text.startswith("pii_"):
            found.add("name" if field.endswith("name") else field)
        found |= redaction.kinds(_NOT_PERSONAL.sub(" ", text), _NOT_COUNTED)
    return sorted(found)


def _money(amount: float, budget: float) -> tuple[str, str]:
    """Cost and budget in dollars, with a fourth decimal only where three would make them look equal."""
    places = 3 if round(amount, 3) != round(budget, 3) or amount == budget else 4
    return f"${amount:.{places}f}", f"${budget:.3f}"


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
    leaks = personal_data(outputs)
    spent, allowed = _money(cost_usd, budget.cost_usd)
    reserve_ok = 0.0 <= reserve <= limit or (reserve == 0.0 and not policy["covered"])
    out = [
        Gate(
            "policy_in_force",
            not auto or bool(policy["in_force"]),
            "policy in force on the loss date" if policy["in_force"] else "auto-routed on a policy not in force",
            "retrieval.policy",
        ),
        Gate(
            "reserve_within_limit",
            reserve_ok,
            f"reserve {reserve:,.0f} within 0..{limit:,.0f}"
            if reserve_ok
            else f"reserve {reserve:,.0f} below 0"
            if reserve < 0
            else f"reserve {reserve:,.0f} exceeds limit {limit:,.0f}",
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
            f"latency {latency_ms / 1000:.2f} s"
            + (" within" if latency_ms <= budget.latency_s * 1000 else " over")
            + f" budget {budget.latency_s:.2f} s",
            "orchestrator.run",
        ),
        Gate(
            "cost_within_budget",
            cost_usd <= budget.cost_usd,
            f"cost {spent}" + (" within" if cost_usd <= budget.cost_usd else " over") + f" budget {allowed}",
            "orchestrator.run",
        ),
        Gate(
            "citations_present",
            not auto or bool(policy.get("citations")),
            f"{len(policy.get('citations') or [])} policy clause(s) cited"
            if policy.get("citations")
            else "no citation",
            "retrieval.policy",
        ),
    ]
    if verdict is not None:
        passed = bool(verdict.get("pass"))
        why = "; ".join(str(r) for r in verdict.get("reasons", [])) or "no reason given"
        score = verdict.get("score")
        scored = f"judge score {score:.2f}" if isinstance(score, (int, float)) else "judge"
        out.append(Gate("judge_rubric", passed, f"{scored}: {why}", "evaluator"))
    return out


def judge_prompt(report: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any]]) -> str:
    """The rubric and the facts the judge rates (no personal data: the outputs are tokenised)."""
    policy, sev, routed = outputs["policy_check"], outputs["severity_reserve"], outputs["route"]
    cited = ", ".join(c.get("citation", "") for c in policy.get("citations") or [])
    return (
        "Rubric: grounded in the policy, reserve proportionate, documents fit the loss, queue fits severity. "
        f"{report['loss_type']}; in force {'yes' if policy['in_force'] else 'no'}; "
        f"cover {'yes' if policy['covered'] else 'no'}; cited: {cited or 'none'}. "
        f"{sev['severity']}, reserve {int(float(sev['reserve']))}; {routed['status']} to {routed['queue']}; "
        f"documents: {', '.join(routed['documents_requested'])}"
    )


def parse_verdict(text: str) -> dict[str, Any]:
    """The judge's verdict from its answer: a JSON object (fenced or amid prose) with pass, score, reasons.

    An answer without one is a failed verdict that says so: an unreadable judge never passes a claim.
    """
    start, end = text.find("{"), text.rfind("}")
    try:
        data = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "pass" not in data:
        return {"pass": False, "score": 0.0, "reasons": ["the judge's answer held no verdict"]}
    passed = data["pass"] if isinstance(data["pass"], bool) else str(data["pass"]).strip().lower() in {"true", "yes"}
    score = data.get("score")
    reasons = data.get("reasons")
    return {
        "pass": passed,
        "score": float(score) if isinstance(score, (int, float)) else None,
        "reasons": [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)] if reasons else [],
    }


async def evaluate(ctx: StepContext) -> dict[str, Any]:
    """The evaluator step: the judge's verdict through the model, then every gate, with the run's budget figures."""
    report, outputs = ctx.input, ctx.deps
    response = await ctx.model(ModelRequest.of("judge", judge_prompt(report, outputs), timeout_s=JUDGE_TIMEOUT_S))
    verdict = parse_verdict(response.text)
    own = usage_of(response)
    usage = total_usage(outputs, own)
    # The run's latency so far, on the recorded clock (0 if the command did not say when the run started).
    now_ms = ctx.now().timestamp() * 1000
    latency_ms = max(0.0, now_ms - ctx.run_started_at_ms) if ctx.run_started_at_ms > 0 else 0.0
    budget = budget_for(str(report["tenant_id"]), ctx.setting(BUDGETS))
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


def evaluation_of(output: Mapping[str, Any]) -> Evaluation:
    """The evaluator step's output as the engine reads it: its gates and the run's budgets (for traces)."""
    budget = output.get("budget") or {}
    return Evaluation(
        gates=tuple(
            Gate(str(g["name"]), bool(g["passed"]), str(g.get("reason", "")), g.get("span"))
            for g in output.get("gates", [])
        ),
        latency_budget_ms=budget.get("latency_budget_ms"),
        cost_budget_usd=budget.get("cost_budget_usd"),
    )
