"""Claim tools: plan, policy check, damage, fraud, severity and reserve, route, document requests.

Each tool is a function of the tokenised report, earlier outputs and what it
gets through its context (model answers, random draws), so a replay with the
recorded values gives the same decision. Policy check is hybrid retrieval
over the shipped wordings and register (``processors.fnol.retrieval``);
fraud check reads the claims-history table (``history.py``). Model calls
(``ctx.model``: the local simulation unless DURABLE_MODEL_BASE_URL is set)
are time-boxed, and each tool reports their ``usage``. Two stand-ins for
outside services can fail, to exercise the engine: the fraud service is
flaky at the rate ``DURABLE_FNOL_FRAUD_FAILURE_RATE`` (0 to 1, default 0;
which attempts fail is drawn with ``ctx.random()``, so a replay of a run
fails exactly where it failed), and a document request fails for good when the claimant left
no email or phone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from processors.engine.workflow import StepContext
from processors.fnol import history
from processors.fnol.evaluator import usage_of
from processors.fnol.retrieval import default_retriever
from processors.models import ModelRequest

Report = Mapping[str, Any]
MODEL_TIMEOUT_S = 5.0

COVERAGE = {
    "auto_collision": {"limit": 25_000.0, "deductible": 500.0},
    "auto_theft": {"limit": 30_000.0, "deductible": 750.0},
    "auto_glass": {"limit": 2_000.0, "deductible": 100.0},
    "property_water": {"limit": 50_000.0, "deductible": 1_000.0},
    "property_fire": {"limit": 250_000.0, "deductible": 1_000.0},
    "property_theft": {"limit": 20_000.0, "deductible": 500.0},
    "liability": {"limit": 100_000.0, "deductible": 0.0},
}

SEVERE_LABELS = {"airbag_deployed", "frame_damage", "total_loss", "structural_damage", "burnt_out", "flooded_room"}
MODERATE_LABELS = {"front_bumper_dent", "rear_bumper_dent", "door_dent", "water_stain", "smoke_damage", "broken_window"}

DOCUMENTS = {
    "auto_collision": ["photos_of_damage", "repair_estimate"],
    "auto_theft": ["police_report", "proof_of_ownership"],
    "auto_glass": ["photos_of_damage"],
    "property_water": ["photos_of_damage", "plumber_report"],
    "property_fire": ["fire_service_report", "photos_of_damage", "inventory_of_loss"],
    "property_theft": ["police_report", "inventory_of_loss"],
    "liability": ["third_party_statement", "incident_report"],
}


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")


async def _ask(ctx: StepContext, purpose: str, prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One model call (recorded by the context): its JSON answer (empty if not JSON) and its usage."""
    response = await ctx.model(ModelRequest.of(purpose, prompt, timeout_s=MODEL_TIMEOUT_S))
    try:
        answer = json.loads(response.text)
    except json.JSONDecodeError:
        answer = {}
    return (answer if isinstance(answer, dict) else {}), usage_of(response)


def _facts(report: Report) -> str:
    labels = sorted({label for photo in report.get("photos", []) for label in photo.get("labels", [])})
    return (
        f"loss type {report['loss_type']}; amount {report['estimated_amount']} {report['currency']}; "
        f"loss date {report['loss_date']}; reported {report['reported_at']}; photo labels: {', '.join(labels) or 'none'}; "
        f"description: {report['description']}"
    )


async def plan(ctx: StepContext) -> dict[str, Any]:
    report = ctx.input
    line = (
        "auto"
        if report["loss_type"].startswith("auto")
        else "property"
        if report["loss_type"].startswith("property")
        else "liability"
    )
    _, usage = await _ask(ctx, "plan", f"Plan the triage of this claim. {_facts(report)}")
    return {
        "line": line,
        "checks": ["policy_check", "damage_assessment", "fraud_check"],
        "loss_type": report["loss_type"],
        "usage": usage,
    }


async def policy_check(ctx: StepContext) -> dict[str, Any]:
    """Hybrid retrieval over the policy wordings and the register: in force, covered, limit, deductible, cited."""
    report = ctx.input
    number = report["policy_number"]
    check = default_retriever().check_policy(number, report["loss_type"], report["loss_date"], tenant_id=report["tenant_id"])
    citations = [
        {"role": c.role, "citation": c.passage.citation, "doc_id": c.passage.doc_id, "clause": c.passage.clause}
        for c in check.citations
    ]
    question = f"Does policy {number} cover a {report['loss_type']} loss, and on what terms?"
    _, usage = await _ask(ctx, "retrieval", f"{question} Clauses: {'; '.join(c['citation'] for c in citations)}")
    return {
        "policy_number": number,
        "found": check.found,
        "product": check.product,
        "in_force": check.in_force,
        "covered": check.covered,
        "limit": float(check.limit or 0.0),
        "deductible": float(check.deductible or 0.0),
        "reasons": list(check.reasons),
        "citations": citations,
        "usage": usage,
    }


async def damage_assessment(ctx: StepContext) -> dict[str, Any]:
    """Damage from the photos' descriptors, read by the vision model."""
    labels = [label for photo in ctx.input.get("photos", []) for label in photo.get("labels", [])]
    severe = sorted(set(labels) & SEVERE_LABELS)
    moderate = sorted(set(labels) & MODERATE_LABELS)
    _, usage = await _ask(ctx, "vision", f"Assess the damage in these photos: {', '.join(labels) or 'no photos'}.")
    score = min(1.0, 0.15 + 0.35 * len(severe) + 0.1 * len(moderate))
    estimate = float(ctx.input["estimated_amount"])
    assessed = round(estimate * (1.0 + 0.25 * len(severe)), 2)
    return {
        "labels": labels,
        "severe_labels": severe,
        "damage_score": round(score, 2),
        "assessed_amount": assessed,
        "photo_count": len(ctx.input.get("photos", [])),
        "usage": usage,
    }


class FraudServiceUnavailable(Exception):
    """The fraud service did not answer: transient, worth retrying."""


class ClaimantUnreachable(Exception):
    """No channel to request documents from the claimant: retrying cannot help."""


def fraud_failure_rate() -> float:
    raw = os.environ.get("DURABLE_FNOL_FRAUD_FAILURE_RATE", "")
    return min(1.0, max(0.0, float(raw))) if raw else 0.0


# Words in a description and the photo labels that should come with them.
_DESCRIBED = {
    "fire": {"burnt_out", "smoke_damage"},
    "water": {"water_stain", "flooded_room"},
    "window": {"broken_window"},
}


async def fraud_check(ctx: StepContext) -> dict[str, Any]:
    """Signals from the report, the claims history table and the policy register, scored; the model notes risk."""
    report = ctx.input
    rate = fraud_failure_rate()
    if rate > 0 and ctx.random() < rate:  # recorded: a replay fails (or not) exactly as the attempt did
        raise FraudServiceUnavailable(f"fraud service did not answer (simulated outage rate {rate:.0%})")
    signals: list[str] = []
    reported = datetime.fromisoformat(report["reported_at"].replace("Z", "+00:00")).date()
    loss = date.fromisoformat(report["loss_date"])
    if (reported - loss).days > 30:
        signals.append("late_notification")
    if loss > reported:
        signals.append("loss_after_report")
    if float(report["estimated_amount"]) > 20_000 and not report.get("photos"):
        signals.append("high_amount_without_photos")
    by_policy, by_claimant = history.prior_claims(report["policy_number"], report["claimant"]["name_token"])
    if report["loss_type"] in {"auto_theft", "property_theft"} and by_policy >= 2:
        signals.append("repeat_theft_history")
    if by_claimant >= 4:
        signals.append("frequent_claimant")
    record = default_retriever().register.get(report["policy_number"])
    if record is not None and 0 <= (loss - record.inception).days < 30:
        signals.append("loss_soon_after_inception")
    labels = {label for photo in report.get("photos", []) for label in photo.get("labels", [])}
    text = report["description"].lower()
    if labels and any(word in text and not (labels & expected) for word, expected in _DESCRIBED.items()):
        signals.append("description_contradicts_photos")
    _, usage = await _ask(ctx, "fraud", f"Assess fraud risk. Signals: {', '.join(signals) or 'none'}. {_facts(report)}")
    score = min(1.0, 0.2 * len(signals) + (_digest(report["claim_id"]) % 10) / 100)
    return {
        "signals": signals,
        "fraud_score": round(score, 2),
        "refer_to_siu": score >= 0.4,
        "prior_claims": {"policy": by_policy, "claimant": by_claimant},
        "usage": usage,
    }


async def severity_reserve(ctx: StepContext) -> dict[str, Any]:
    """Severity from the damage, and a reserve from the damage, the deductible and the limit."""
    policy, damage, fraud = ctx.deps["policy_check"], ctx.deps["damage_assessment"], ctx.deps["fraud_check"]
    amount = float(damage["assessed_amount"])
    if (damage["severe_labels"] and amount > 10_000) or amount > 40_000:
        severity = "HIGH"
    elif amount > 3_000 or damage["damage_score"] >= 0.5:
        severity = "MEDIUM"
    else:
        severity = "LOW"
    reserve = 0.0
    if policy["covered"]:
        reserve = max(0.0, min(float(policy["limit"]), amount - float(policy["deductible"])))
        reserve = float(round(reserve / 100.0) * 100)  # reserves are set in round hundreds
    answer, usage = await _ask(
        ctx,
        "severity",
        f"Severity and reserve for damage assessed at {amount}, severe damage: {', '.join(damage['severe_labels']) or 'none'}; "
        f"limit {policy['limit']}, deductible {policy['deductible']}.",
    )
    # Setting the reserve is a side effect on the claims ledger; release_reserve undoes it.
    return {
        "severity": severity,
        "reserve": reserve,
        "fraud_score": fraud["fraud_score"],
        "reserve_id": f"RSV-{ctx.input['claim_id']}",
        "rationale": str(answer.get("rationale", "")),
        "usage": usage,
    }


def release_reserve(ctx: StepContext) -> dict[str, Any]:
    """Compensation of severity_reserve: release what it set on the ledger."""
    held = ctx.output or {}
    return {"reserve_id": held.get("reserve_id"), "released": float(held.get("reserve", 0.0))}


def route(ctx: StepContext) -> dict[str, Any]:
    report = ctx.input
    policy, fraud, sev = ctx.deps["policy_check"], ctx.deps["fraud_check"], ctx.deps["severity_reserve"]
    reasons: list[str] = []
    status = "ROUTED"
    if not policy["in_force"]:
        status, queue = "REVIEW", "coverage_review"
        reasons.append("policy not in force on the loss date")
    elif not policy["covered"]:
        status, queue = "REVIEW", "coverage_review"
        reasons.append(f"loss type {report['loss_type']} not covered by the policy")
    elif fraud["refer_to_siu"]:
        status, queue = "REVIEW", "special_investigations"
        reasons.append(f"fraud score {fraud['fraud_score']:.2f}: {', '.join(fraud['signals']) or 'pattern'}")
    elif sev["severity"] == "HIGH":
        queue = "complex_claims"
        reasons.append("high severity")
    elif sev["severity"] == "LOW" and report["loss_type"] == "auto_glass":
        queue = "fast_track_glass"
        reasons.append("low-severity glass claim")
    elif sev["severity"] == "LOW":
        queue = "fast_track"
        reasons.append("low severity, policy in force")
    else:
        queue = "standard_claims"
        reasons.append("medium severity")
    documents = list(DOCUMENTS[report["loss_type"]])
    if sev["severity"] == "HIGH" and "independent_assessment" not in documents:
        documents.append("independent_assessment")
    return {
        "status": status,
        "queue": queue,
        "severity": sev["severity"],
        "reserve": sev["reserve"],
        "documents_requested": documents,
        "reasons": reasons,
    }


def request_documents(ctx: StepContext) -> dict[str, Any]:
    """Ask the claimant for the documents the route step chose, by email or else by SMS."""
    claimant = ctx.input["claimant"]
    documents = list(ctx.deps["route"]["documents_requested"])
    if claimant.get("email_token"):
        channel, to = "email", claimant["email_token"]
    elif claimant.get("phone_token"):
        channel, to = "sms", claimant["phone_token"]
    else:
        raise ClaimantUnreachable(f"claimant of {ctx.input['claim_id']} left no email or phone")
    return {"channel": channel, "to": to, "documents": documents}
