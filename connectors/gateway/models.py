"""The gateway's response bodies, as the OpenAPI document states them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class RunAccepted(BaseModel):
    """202: the run is accepted (or was already); follow it at ``status_url``."""

    run_id: str
    status: str = Field(description="ACCEPTED, or the run's status if it existed already")
    duplicate: bool = Field(description="this claim had been submitted before with the same content")
    status_url: str
    events_url: str


class Signature(BaseModel):
    """Whether the run's decision verified with the gateway's keyring (README, "Trust")."""

    status: Literal["verified", "invalid", "unverified", "unsigned"] = Field(
        description="verified: signed by a known key over an unbroken journal chain; invalid: it failed, the output "
        "is withheld and the record dead-lettered; unverified: no decision record readable yet, withheld; "
        "unsigned: this gateway runs with DURABLE_SIGNING=off and checks nothing"
    )
    key_id: str | None = Field(default=None, description="the key id that signed the latest decision (verified)")
    reason: str | None = Field(default=None, description="why it is not verified, and which record")


class RunDecided(RunAccepted):
    """200: the run has ended or paused; ``output`` is its decision (or what its failure or pause handling produced).

    A PAUSED run waits for an operator (redrive or compensate), which writes its next decision.
    """

    output: dict[str, Any] | None
    signature: Signature | None = Field(default=None, description="the output's check; output is null unless it passed")


class JournalEntry(BaseModel):
    seq: int
    at_ms: int
    kind: str
    step: str | None = None
    attempt: int | None = None
    detail: Any = None


class RunSummary(BaseModel):
    run_id: str
    workflow: str
    version: str | None = Field(default=None, description="the workflow version the run started on, and finishes on")
    status: str
    started_at_ms: int
    last_event_at_ms: int
    output: dict[str, Any] | None = None
    signature: Signature | None = Field(
        default=None, description="the output's check (null while the run has no output); output is null unless it passed"
    )


class RunList(BaseModel):
    runs: list[RunSummary]


class RunDetail(RunSummary):
    """A run: state, step timeline (its journal), decision."""

    timeline: list[JournalEntry]


class Span(BaseModel):
    span_id: str
    parent_span_id: str | None
    name: str
    start_unix_nano: int
    end_unix_nano: int
    duration_ms: float
    status: str
    tokens: int
    cost_usd: float
    eval_passed: bool | None = Field(description="the evaluator's mark on this span, if it judged it")
    attributes: dict[str, Any]


class Gate(BaseModel):
    name: str
    passed: bool
    reason: str
    span: str | None


class TraceView(BaseModel):
    run_id: str
    trace_id: str | None
    spans: list[Span]
    gates: list[Gate]
    latency_ms: float
    latency_budget_ms: float | None
    tokens: int
    cost_usd: float
    cost_budget_usd: float | None
    output: dict[str, Any] | None
    summary: str | None = Field(description="the workflow's one line for its output, e.g. ROUTED · reserve £5,600")
    signature: Signature | None = Field(
        default=None, description="the output's check (null while there is no output); output is null unless it passed"
    )


class DeadLetterSummary(BaseModel):
    dead_letter_id: str
    kind: str
    run_id: str | None
    step: str | None
    error_type: str
    reason: str
    at_ms: int
    status: str


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterSummary]


class RedriveAnswer(BaseModel):
    dead_letter_id: str
    run_id: str
    status: str = Field(description="requested, or already redriven")
    status_url: str


class OperatorAnswer(BaseModel):
    """An operator's compensate or rollback: 202 requested, or 200 applied already."""

    run_id: str
    action: str = Field(description="compensate or rollback")
    status: str = Field(description="requested, or what was applied already")
    status_url: str


class AttemptVerdict(BaseModel):
    step: str
    action: str
    attempt: int
    verdict: str
    recorded_error: dict[str, Any] | None
    replayed_error: dict[str, Any] | None
    diff: list[str]


class ReplayReport(BaseModel):
    """What replaying the run's recorded inputs with the current code gives; nothing is written."""

    run_id: str
    recorded_status: str
    would_complete: bool
    attempts: list[AttemptVerdict]
    not_finished: list[str]
    result: dict[str, Any] | None
    counts: dict[str, int]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
