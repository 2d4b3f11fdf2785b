"""The FNOL workflow: the claims triage agent.

plan -> (policy_check, damage_assessment, fraud_check in parallel) -> severity_reserve -> route
-> evaluator -> request_documents. Spans are named as the seed names them:
orchestrator.plan, retrieval.policy, tool.vision, tool.fraud_check,
reasoner.severity, tool.route, evaluator, tool.documents. Every step is
time-boxed (``timeout_s``) and its model calls too (``tools.MODEL_TIMEOUT_S``).

The evaluator (``evaluator.py``) gates the decision: a failed gate, or a run
over its tenant's latency or cost budget (``budgets.py``: 3.00 s and $0.025
by default), sends an auto-routed claim to ``human_review`` with the gate's
reason first ("gate cost_within_budget failed: cost $0.031 over budget
$0.025"); a claim the route already sent to review keeps its queue and gets
the gate's reason appended. ``decision`` is the one place that builds the
record. The fraud service is retried with backoff; setting the reserve is
undone (released) if a later step fails for good, and the claim then goes
to ``manual_handling`` with the reason (``review_decision``). Requesting the
documents is the exception: a reserve should not be released because an
email bounced or a claimant left no contact details, so when that step fails
for good the run pauses, the claim is ON_HOLD with its route and reserve
(``held_decision``), and an operator resumes it (``durable dlq redrive``,
e.g. once a fix is deployed) or undoes it (``durable runs compensate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.engine import RetryPolicy, RunFailure, RunPaused, RunResult, Step, Workflow
from processors.fnol import budgets, tools
from processors.fnol.evaluator import evaluate, evaluation_of
from processors.fnol.intake import FNOL_INTAKE
from processors.fnol.simulation import FNOL_SIMULATION
from processors.fnol.view import describe
from schemas.fnol import SCHEMA_DIR

INPUT_TOPIC = "fnol.reported"
DECISIONS_TOPIC = "decisions"
# Bump when a change of the tools or rules changes decisions: recorded with each attempt, shown by replays.
VERSION = "fnol-2026.11.29"  # request_documents pauses the run when it fails for good (it compensated before)
# In-flight runs of these versions finish on this declaration (same steps; they pause too, rather than release).
CONTINUES = ("fnol-2026.11.28",)

TOOL_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.2, max_backoff_s=2.0)
FRAUD_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.2, multiplier=2.0, max_backoff_s=2.0)
DOCUMENTS_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff_s=0.2,
    max_backoff_s=2.0,
    non_retryable=(tools.ClaimantUnreachable,),
    on_exhausted="pause",
)


def run_id_of(report: Mapping[str, Any]) -> str:
    """One run per claim and tenant: ``fnol:<tenant>:<claim>``.

    ``:`` is in neither id's alphabet, so no two (tenant, claim) pairs share a run id (``-`` was, until
    ``acme-x``/``CLM-1`` and ``acme``/``x-CLM-1`` collided).
    """
    return f"fnol:{report['tenant_id']}:{report['claim_id']}"


def decision(run: RunResult) -> dict[str, Any]:
    """The routed decision, unless a gate failed: then an auto-routed claim goes to human review, saying why."""
    report, routed = run.input, run.outputs["route"]
    failed = [g for g in run.outputs.get("evaluator", {}).get("gates", []) if not g["passed"]]
    status, queue, reasons = routed["status"], routed["queue"], list(routed["reasons"])
    if failed and status == "ROUTED":
        status, queue = "REVIEW", "human_review"
        reasons = [f"gate {g['name']} failed: {g['reason']}" for g in failed] + reasons
    elif failed:
        reasons += [f"gate {g['name']} failed: {g['reason']}" for g in failed]
    return {
        "decision_id": run.output_id,
        "claim_id": report["claim_id"],
        "tenant_id": report["tenant_id"],
        "run_id": run.run_id,
        "status": status,
        "queue": queue,
        "severity": routed["severity"],
        "reserve": float(routed["reserve"]),
        "currency": report["currency"],
        "documents_requested": list(routed["documents_requested"]),
        "reasons": reasons,
        "decided_at_ms": run.at_ms,
    }


def held_decision(paused: RunPaused) -> dict[str, Any]:
    """The claim is routed and its reserve held, but its documents could not be requested: ON_HOLD, saying why.

    Everything else is the routed decision (queue, severity, reserve, gate reasons); the hold's reasons come first.
    """
    routed = decision(
        RunResult(paused.run_id, paused.input, paused.outputs, paused.at_ms, paused.output_id, paused.generation)
    )
    reserve = routed["reserve"]
    held = f"reserve of {reserve:,.0f} {routed['currency']} held" if reserve else "no reserve set"
    return {
        **routed,
        "status": "ON_HOLD",
        "documents_requested": [],
        "reasons": [
            f"documents not requested: {paused.error_type}: {paused.error_message}",
            f"{held}; on hold until an operator redrives dead letter {paused.dead_letter_id} or compensates the run",
            *routed["reasons"],
        ],
    }


def review_decision(failure: RunFailure) -> dict[str, Any]:
    """A run that stopped goes to a person, with why; a reserve still held is reported as held.

    A completed run rolled back by an operator (``durable runs rollback``) gets a RETRACTED decision instead: the
    operator's reason and what was undone (the reserve released).

    Built from whatever the severity step left (it may be missing or malformed when the run stopped on a bad record).
    """
    report = failure.input
    sev = failure.outputs.get("severity_reserve") or {}
    reserve = sev.get("reserve")
    amount = float(reserve) if isinstance(reserve, int | float) and not isinstance(reserve, bool) else 0.0
    released = "severity_reserve" in failure.compensated
    reasons = [failure.reason]
    if released and amount:
        reasons.append(f"reserve of {amount:,.0f} {report['currency']} released")
    elif failure.retracted:
        reasons.append("no reserve to release")
    severity = sev.get("severity")
    return {
        "decision_id": failure.output_id,
        "claim_id": report["claim_id"],
        "tenant_id": report["tenant_id"],
        "run_id": failure.run_id,
        "status": "RETRACTED" if failure.retracted else "REVIEW",
        "queue": "retracted" if failure.retracted else "manual_handling",
        "severity": severity if isinstance(severity, str) else "UNKNOWN",
        "reserve": 0.0 if released else amount,
        "currency": report["currency"],
        "documents_requested": [],
        "reasons": reasons,
        "decided_at_ms": failure.at_ms,
    }


def fnol_workflow(*, fraud_failure_rate: float | None = None) -> Workflow:
    """The FNOL workflow; ``fraud_failure_rate`` simulates a fraud-service outage (None: from the environment)."""
    return Workflow(
        name="fnol",
        steps=(
            Step("plan", tools.plan, span="orchestrator.plan", retry=TOOL_RETRY, timeout_s=5.0),
            Step(
                "policy_check",
                tools.policy_check,
                after=("plan",),
                span="retrieval.policy",
                retry=TOOL_RETRY,
                timeout_s=5.0,
            ),
            Step(
                "damage_assessment",
                tools.damage_assessment,
                after=("plan",),
                span="tool.vision",
                retry=TOOL_RETRY,
                timeout_s=5.0,
            ),
            Step(
                "fraud_check",
                tools.fraud_checker(fraud_failure_rate),
                after=("plan",),
                span="tool.fraud_check",
                retry=FRAUD_RETRY,
                timeout_s=5.0,
            ),
            Step(
                "severity_reserve",
                tools.severity_reserve,
                after=("policy_check", "damage_assessment", "fraud_check"),
                span="reasoner.severity",
                retry=TOOL_RETRY,
                timeout_s=5.0,
                compensate=tools.release_reserve,
            ),
            Step(
                "route",
                tools.route,
                after=("policy_check", "fraud_check", "severity_reserve"),
                span="tool.route",
                timeout_s=5.0,
                local=True,  # a pure rule, no I/O: run by the orchestrator, no Kafka round trip
            ),
            Step(
                "evaluator",
                evaluate,
                after=("plan", "policy_check", "damage_assessment", "fraud_check", "severity_reserve", "route"),
                span="evaluator",
                retry=TOOL_RETRY,
                timeout_s=5.0,
                evaluation=evaluation_of,
            ),
            Step(
                "request_documents",
                tools.request_documents,
                after=("route", "evaluator"),
                span="tool.documents",
                retry=DOCUMENTS_RETRY,
                timeout_s=5.0,
            ),
        ),
        input_topic=INPUT_TOPIC,
        input_schema="durable.fnol.FnolReported",
        output_topic=DECISIONS_TOPIC,
        output_schema="durable.fnol.RoutedDecision",
        run_id_of=run_id_of,
        result=decision,
        on_failure=review_decision,
        on_pause=held_decision,
        schemas=(SCHEMA_DIR,),
        intake=FNOL_INTAKE,
        describe=describe,
        simulation=FNOL_SIMULATION,
        diff_ignores=frozenset({"decided_at_ms", "decision_id"}),
        # What shapes a step besides its input: recorded with every attempt, served back on replay.
        settings=(tools.fraud_failure_setting(fraud_failure_rate), budgets.BUDGETS, tools.SYNTHESISE_POLICIES),
        version=VERSION,
        continues=CONTINUES,
    )


FNOL = fnol_workflow()
