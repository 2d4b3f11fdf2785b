"""Claim tools: plan, policy check, damage, fraud, severity and reserve, route, document requests.

Each tool is a function of the tokenised report, earlier outputs and what it
gets through its context (model answers, random draws), so a replay with the
recorded values gives the same decision. The decision-making rules are
deterministic code; the model (``ctx.model``: the local simulation unless
DURABLE_MODEL_BASE_URL is set) plans, summarises the cited clauses, reads the
photos, notes fraud risk and writes the severity rationale, and every
tool reports the tokens and cost of its calls as ``usage`` (zeros when it
calls none). Model calls are time-boxed (``MODEL_TIMEOUT_S``), and each step
by its ``timeout_s``.

- policy_check: hybrid retrieval over the shipped wordings and the policy
  register (``processors.fnol.retrieval``): in force, covered, limit,
  deductible, and the clauses that say so (cited). A policy number the
  register does not hold goes to coverage review ("not in the policy
  register"); ``DURABLE_FNOL_SYNTHESISE_POLICIES=1`` instead gives unknown
  numbers the register's own rule (for demos on generated claims).
- damage_assessment: the photos' labels, a typical cost per label (a floor
  under the claimant's estimate) and the vision model's reading.
- fraud_check: signals from the report, the claims-history table
  (``history.py``: prior claims per policy and per claimant), the policy's
  inception date and the description against the photos, scored.
- severity_reserve: severity from the assessed damage; a reserve of the
  damage less the deductible, in round hundreds, within 0..limit.

Two stand-ins for outside services can fail, to exercise the engine: the
fraud service is flaky at a failure rate (0 to 1; :func:`fraud_checker`
takes it, else ``DURABLE_FNOL_FRAUD_FAILURE_RATE``, default 0; which attempts
fail is drawn with ``ctx.random()``, so a replay of a run fails exactly where
it failed; the rate is a workflow setting, recorded with each attempt, so a
replay uses the rate the run had, not the replaying shell's), and a document request fails for good when the claimant left no
email or phone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from typing import Any

from processors.engine import StepContext
from processors.engine.context import StepHandler
from processors.engine.settings import Setting
from processors.fnol import history
from processors.fnol.evaluator import NO_USAGE, usage_of
from processors.fnol.retrieval import PolicyRetriever, default_retriever
from processors.models import ModelRequest

Report = Mapping[str, Any]
MODEL_TIMEOUT_S = 4.0  # each model call; a step's whole attempt has 5 s
SYNTHESISE_ENV = "DURABLE_FNOL_SYNTHESISE_POLICIES"

# The standard schedule of the shipped wordings (the register holds each policy's own).
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
# What the damage a photo label shows typically costs to put right (claim currency): a floor under the estimate.
LABEL_COST = {
    "total_loss": 15_000.0,
    "structural_damage": 8_000.0,
    "frame_damage": 6_000.0,
    "burnt_out": 6_000.0,
    "airbag_deployed": 4_000.0,
    "flooded_room": 3_500.0,
    "smoke_damage": 900.0,
    "front_bumper_dent": 600.0,
    "rear_bumper_dent": 600.0,
    "door_dent": 500.0,
    "water_stain": 400.0,
    "windscreen_crack": 350.0,
    "broken_window": 300.0,
    "windscreen_chip": 100.0,
}

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


def _labels(report: Report) -> list[str]:
    return [label for photo in report.get("photos", []) for label in photo.get("labels", [])]


def _line(loss_type: str) -> str:
    return "auto" if loss_type.startswith("auto") else "property" if loss_type.startswith("property") else "liability"


async def plan(ctx: StepContext) -> dict[str, Any]:
    """Which line the claim belongs to and which checks it needs; the model drafts the plan."""
    report = ctx.input
    photos = len(report.get("photos", []))
    answer, usage = await _ask(
        ctx,
        "plan",
        f"Plan the triage checks for a {report['loss_type']} claim of {report['estimated_amount']} "
        f"{report['currency']} with {photos} photo(s), lost {report['loss_date']}, reported {report['reported_at']}.",
    )
    return {
        "line": _line(report["loss_type"]),
        "checks": ["policy_check", "damage_assessment", "fraud_check"],
        "loss_type": report["loss_type"],
        "model_line": str(answer.get("line", "")),
        "usage": usage,
    }


@cache
def _synthesising_retriever() -> PolicyRetriever:
    base = default_retriever()
    return PolicyRetriever(register=base.register, synthesise_unknown=True)


SYNTHESISE_POLICIES = Setting(
    "synthesise_policies",
    lambda env: env.get(SYNTHESISE_ENV, "") in {"1", "true", "yes"},
    f"answer policy numbers the register does not hold by its rule ({SYNTHESISE_ENV}=1)",
)


def retriever(synthesise: bool | None = None) -> PolicyRetriever:
    """The shipped retriever; when synthesising (None: DURABLE_FNOL_SYNTHESISE_POLICIES=1), one that also answers unknown numbers."""
    synthesise = SYNTHESISE_POLICIES.current() if synthesise is None else synthesise
    return _synthesising_retriever() if synthesise else default_retriever()


async def policy_check(ctx: StepContext) -> dict[str, Any]:
    """Hybrid retrieval over the policy wordings and the register: in force, covered, limit, deductible, cited."""
    report = ctx.input
    number, loss_type = report["policy_number"], report["loss_type"]
    source = retriever(bool(ctx.setting(SYNTHESISE_POLICIES)))
    check = source.check_policy(number, loss_type, report["loss_date"], tenant_id=report["tenant_id"])
    citations = [
        {
            "role": c.role,
            "citation": c.passage.citation,
            "doc_id": c.passage.doc_id,
            "section": c.passage.section,
            "clause": c.passage.clause,
        }
        for c in check.citations
    ]
    question = f"Is a {loss_type.replace('_', ' ')} loss covered, and what excess and limit apply?"
    # The clauses that best answer the coverage question, by hybrid search in the policy's own wording.
    answers = source.search(question, k=2, doc_id=check.product) if check.product else []
    passages = [{"citation": p.citation, "score": round(p.score, 4)} for p in answers]
    quoted = " ".join(f"[{c.citation}] {c.text[:150]}" for c in [x.passage for x in check.citations][:3])
    _, usage = await _ask(
        ctx,
        "retrieval",
        f"{question} Policy {number}, product {check.product or 'unknown'}. "
        f"Summarise the cover with citations from these clauses: {quoted or 'none found'}",
    )
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
        "passages": passages,
        "usage": usage,
    }


async def damage_assessment(ctx: StepContext) -> dict[str, Any]:
    """Damage from the photos' descriptors (labels, typical costs), read by the vision model."""
    report = ctx.input
    labels = _labels(report)
    distinct = sorted(set(labels))
    severe = sorted(set(labels) & SEVERE_LABELS)
    moderate = sorted(set(labels) & MODERATE_LABELS)
    shown = "; ".join(
        f"photo {i + 1} ({photo.get('uri', '')}): {', '.join(photo.get('labels', [])) or 'no labels'}"
        for i, photo in enumerate(report.get("photos", []))
    )
    answer, usage = await _ask(
        ctx,
        "vision",
        f"Assess the damage shown in the photos of a {report['loss_type']} claim. {shown or 'No photos were sent.'} "
        f"The claimant writes: {report['description']} "
        "Name the damaged parts, say whether the photos show what is described, and score the damage from 0 to 1.",
    )
    score = min(1.0, 0.15 + 0.35 * len(severe) + 0.1 * len(moderate))
    estimate = float(report["estimated_amount"])
    photo_floor = sum(LABEL_COST.get(label, 0.0) for label in distinct)
    assessed = round(max(estimate * (1.0 + 0.25 * len(severe)), photo_floor), 2)
    model_score = answer.get("damage_score")
    return {
        "labels": labels,
        "severe_labels": severe,
        "damage_score": round(score, 2),
        "photo_floor": photo_floor,
        "assessed_amount": assessed,
        "photo_count": len(report.get("photos", [])),
        "model_damage_score": float(model_score) if isinstance(model_score, (int, float)) else None,
        "usage": usage,
    }


class FraudServiceUnavailable(Exception):
    """The fraud service did not answer: transient, worth retrying."""


class ClaimantUnreachable(Exception):
    """No channel to request documents from the claimant: retrying cannot help."""


FRAUD_FAILURE_RATE_ENV = "DURABLE_FNOL_FRAUD_FAILURE_RATE"


def _rate_of(env: Mapping[str, str]) -> float | str:
    # A malformed value is recorded as written and fails the fraud step (retryably, as before), not every step.
    raw = env.get(FRAUD_FAILURE_RATE_ENV, "").strip()
    try:
        return min(1.0, max(0.0, float(raw))) if raw else 0.0
    except ValueError:
        return raw


FRAUD_FAILURE_RATE = Setting(
    "fraud_failure_rate", _rate_of, f"the simulated fraud service's failure rate ({FRAUD_FAILURE_RATE_ENV})"
)


def fraud_failure_rate() -> float:
    """This process's simulated fraud-service failure rate (``DURABLE_FNOL_FRAUD_FAILURE_RATE``, default 0)."""
    return _as_rate(FRAUD_FAILURE_RATE.current())


def _as_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{FRAUD_FAILURE_RATE_ENV} must be a number from 0 to 1, not {value!r}")
    return min(1.0, max(0.0, float(value)))


def fraud_failure_setting(failure_rate: float | None = None) -> Setting:
    """The fraud failure rate as a workflow setting: bound to ``failure_rate``, else read from the environment."""
    if failure_rate is None:
        return FRAUD_FAILURE_RATE
    return Setting.fixed(FRAUD_FAILURE_RATE.name, min(1.0, max(0.0, failure_rate)), FRAUD_FAILURE_RATE.doc)


# Words in a description and the photo labels that should come with them.
_DESCRIBED = {
    "fire": {"burnt_out", "smoke_damage"},
    "water": {"water_stain", "flooded_room"},
    "window": {"broken_window"},
    "windscreen": {"windscreen_chip", "windscreen_crack", "broken_window"},
}
SOON_AFTER_INCEPTION_DAYS = 30
FREQUENT_CLAIMANT = 4  # prior claims by the claimant in the table's 12 months
REPEAT_THEFT = 2  # prior claims on the policy, for a theft


def fraud_signals(report: Report) -> tuple[list[str], dict[str, int]]:
    """The fraud signals of a report (pure): from the report, the history table and the policy register."""
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
    if report["loss_type"] in {"auto_theft", "property_theft"} and by_policy >= REPEAT_THEFT:
        signals.append("repeat_theft_history")
    if by_claimant >= FREQUENT_CLAIMANT:
        signals.append("frequent_claimant")
    record = default_retriever().register.get(report["policy_number"])  # the same register either way
    if record is not None and 0 <= (loss - record.inception).days < SOON_AFTER_INCEPTION_DAYS:
        signals.append("loss_soon_after_inception")
    labels = set(_labels(report))
    words = set(report["description"].lower().replace(".", " ").replace(",", " ").replace(";", " ").split())
    if labels and any(word in words and not (labels & expected) for word, expected in _DESCRIBED.items()):
        signals.append("description_contradicts_photos")
    return signals, {"policy": by_policy, "claimant": by_claimant}


def fraud_checker(failure_rate: float | None = None) -> StepHandler:
    """The fraud check, its simulated outage at the run's ``fraud_failure_rate`` setting.

    The workflow declares that setting (:func:`fraud_failure_setting`: bound to ``failure_rate``, else
    ``DURABLE_FNOL_FRAUD_FAILURE_RATE``); the attempt reads the value it runs under from its context.
    """
    setting = fraud_failure_setting(failure_rate)

    async def fraud_check_step(ctx: StepContext) -> dict[str, Any]:
        return await fraud_check(ctx, _as_rate(ctx.setting(setting)))

    return fraud_check_step


async def fraud_check(ctx: StepContext, rate: float | None = None) -> dict[str, Any]:
    """Signals from the report, the claims history table and the policy register, scored; the model notes risk."""
    report = ctx.input
    rate = fraud_failure_rate() if rate is None else rate
    if rate > 0 and ctx.random() < rate:  # recorded: a replay fails (or not) exactly as the attempt did
        raise FraudServiceUnavailable(f"fraud service did not answer (simulated outage rate {rate:.0%})")
    signals, prior = fraud_signals(report)
    labels = sorted(set(_labels(report)))
    answer, usage = await _ask(
        ctx,
        "fraud",
        f"Assess the fraud risk of a {report['loss_type']} claim of {report['estimated_amount']} {report['currency']}, "
        f"lost {report['loss_date']}, reported {report['reported_at']}; prior claims on the policy {prior['policy']}, "
        f"by the claimant {prior['claimant']}; photo labels: {', '.join(labels) or 'none'}; "
        f"signals: {', '.join(signals) or 'none'}. Description: {report['description']}",
    )
    score = min(1.0, 0.2 * len(signals) + (_digest(report["claim_id"]) % 10) / 100)
    model_risk = answer.get("risk")
    return {
        "signals": signals,
        "fraud_score": round(score, 2),
        "refer_to_siu": score >= 0.4,
        "prior_claims": prior,
        "model_risk": float(model_risk) if isinstance(model_risk, (int, float)) else None,
        "usage": usage,
    }


def severity_of(damage: Mapping[str, Any]) -> str:
    """HIGH, MEDIUM or LOW from the assessed amount and the severe damage the photos show."""
    amount = float(damage["assessed_amount"])
    if (damage["severe_labels"] and amount > 10_000) or amount > 40_000:
        return "HIGH"
    if amount > 3_000 or damage["severe_labels"]:
        return "MEDIUM"
    return "LOW"


def reserve_of(policy: Mapping[str, Any], amount: float) -> float:
    """The damage less the deductible, in round hundreds, within 0..limit (0 when not covered)."""
    if not policy["covered"]:
        return 0.0
    limit = float(policy["limit"])
    reserve = max(0.0, min(limit, amount - float(policy["deductible"])))
    rounded = float(round(reserve / 100.0) * 100)  # reserves are set in round hundreds
    return rounded if rounded <= limit else float(math.floor(limit / 100.0) * 100)


async def severity_reserve(ctx: StepContext) -> dict[str, Any]:
    """Severity from the damage, and a reserve from the damage, the deductible and the limit."""
    report = ctx.input
    policy, damage, fraud = ctx.deps["policy_check"], ctx.deps["damage_assessment"], ctx.deps["fraud_check"]
    amount = float(damage["assessed_amount"])
    severity = severity_of(damage)
    reserve = reserve_of(policy, amount)
    answer, usage = await _ask(
        ctx,
        "severity",
        f"Rate the severity (LOW, MEDIUM or HIGH) of a {report['loss_type']} claim and justify the reserve. "
        f"Damage assessed from {damage['photo_count']} photo(s), amount: {amount:.2f}; damage score "
        f"{damage['damage_score']}; severe damage: {', '.join(damage['severe_labels']) or 'none'}; "
        f"all labels: {', '.join(sorted(set(damage['labels']))) or 'none'}. Policy {policy.get('product') or 'unknown'}: "
        f"{'covered' if policy['covered'] else 'no cover'}, limit {int(policy['limit'])}, excess "
        f"{int(policy['deductible'])}. Fraud score {fraud['fraud_score']}. Proposed: {severity}, reserve {int(reserve)}.",
    )
    # Setting the reserve is a side effect on the claims ledger; release_reserve undoes it.
    return {
        "severity": severity,
        "reserve": reserve,
        "fraud_score": fraud["fraud_score"],
        "reserve_id": f"RSV-{report['claim_id']}",
        "rationale": str(answer.get("rationale", "")),
        "model_severity": str(answer.get("severity", "")),
        "usage": usage,
    }


def release_reserve(ctx: StepContext) -> dict[str, Any]:
    """Compensation of severity_reserve: release what it set on the ledger."""
    held = ctx.output or {}
    return {"reserve_id": held.get("reserve_id"), "released": float(held.get("reserve", 0.0)), "usage": dict(NO_USAGE)}


def route(ctx: StepContext) -> dict[str, Any]:
    """The queue, status and documents of a claim, from coverage, fraud and severity (rules, no model)."""
    report = ctx.input
    policy, fraud, sev = ctx.deps["policy_check"], ctx.deps["fraud_check"], ctx.deps["severity_reserve"]
    reasons: list[str] = []
    status = "ROUTED"
    if not policy.get("found", True):
        status, queue = "REVIEW", "coverage_review"
        reasons.append(f"policy {report['policy_number']} is not in the policy register")
    elif not policy["in_force"]:
        status, queue = "REVIEW", "coverage_review"
        why = [r for r in policy.get("reasons", []) if "covered by" not in r][:1]
        reasons.append("policy not in force on the loss date" + (f": {why[0]}" if why else ""))
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
    if status == "ROUTED" and float(sev["reserve"]) == 0.0:
        reasons.append("damage within the deductible: no reserve")
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
        "usage": dict(NO_USAGE),
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
    return {"channel": channel, "to": to, "documents": documents, "usage": dict(NO_USAGE)}
