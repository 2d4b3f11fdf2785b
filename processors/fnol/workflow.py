"""The FNOL workflow: plan -> (policy, damage, fraud in parallel) -> severity/reserve -> route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.engine.transition import output_id
from processors.engine.workflow import Step, Workflow
from processors.fnol import tools

INPUT_TOPIC = "fnol.reported"
DECISIONS_TOPIC = "decisions"


def run_id_of(report: Mapping[str, Any]) -> str:
    """One run per claim and tenant: a second report of the same claim is a duplicate."""
    return f"fnol-{report['tenant_id']}-{report['claim_id']}"


def decision(run_id: str, report: Mapping[str, Any], outputs: Mapping[str, Any], at_ms: int) -> dict[str, Any]:
    routed = outputs["route"]
    return {
        "decision_id": output_id(run_id),
        "claim_id": report["claim_id"],
        "tenant_id": report["tenant_id"],
        "run_id": run_id,
        "status": routed["status"],
        "queue": routed["queue"],
        "severity": routed["severity"],
        "reserve": float(routed["reserve"]),
        "currency": report["currency"],
        "documents_requested": list(routed["documents_requested"]),
        "reasons": list(routed["reasons"]),
        "decided_at_ms": at_ms,
    }


def failed_decision(run_id: str, report: Mapping[str, Any], reason: str, at_ms: int) -> dict[str, Any]:
    return {
        "decision_id": output_id(run_id),
        "claim_id": report["claim_id"],
        "tenant_id": report["tenant_id"],
        "run_id": run_id,
        "status": "FAILED",
        "queue": "manual_handling",
        "severity": "UNKNOWN",
        "reserve": 0.0,
        "currency": report["currency"],
        "documents_requested": [],
        "reasons": [reason],
        "decided_at_ms": at_ms,
    }


FNOL = Workflow(
    name="fnol",
    steps=(
        Step("plan", tools.plan),
        Step("policy_check", tools.policy_check, after=("plan",), max_attempts=3),
        Step("damage_assessment", tools.damage_assessment, after=("plan",), max_attempts=3),
        Step("fraud_check", tools.fraud_check, after=("plan",), max_attempts=3),
        Step("severity_reserve", tools.severity_reserve, after=("policy_check", "damage_assessment", "fraud_check")),
        Step("route", tools.route, after=("policy_check", "fraud_check", "severity_reserve")),
    ),
    input_topic=INPUT_TOPIC,
    input_schema="durable.fnol.FnolReported",
    output_topic=DECISIONS_TOPIC,
    output_schema="durable.fnol.RoutedDecision",
    run_id_of=run_id_of,
    result=decision,
    on_failure=failed_decision,
)
