"""Pydantic models that mirror the Avro schemas, one model per ``*.avsc``.

They validate at the edges (files, HTTP, CLI) and give the engine typed
records; :data:`SCHEMA_OF` ties each model to its Avro full name, and a unit
test checks that the fields agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LossType = Literal[
    "auto_collision",
    "auto_theft",
    "auto_glass",
    "property_water",
    "property_fire",
    "property_theft",
    "liability",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Record):
    postcode: str
    country: str


class ClaimantTokens(_Record):
    name_token: str
    email_token: str | None = None
    phone_token: str | None = None


class Vehicle(_Record):
    plate_token: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None


class Photo(_Record):
    uri: str
    labels: list[str] = Field(default_factory=list)


class FnolReported(_Record):
    """A first notice of loss on Kafka, personal data tokenised."""

    claim_id: str
    tenant_id: str
    policy_number: str
    reported_at: str
    loss_date: str
    loss_type: LossType
    description: str
    location: Location
    claimant: ClaimantTokens
    vehicle: Vehicle | None = None
    photos: list[Photo] = Field(default_factory=list)
    estimated_amount: float
    currency: str


class StepCommand(_Record):
    """Run one attempt of one step; ``command_id`` is ``run_id/step/attempt``."""

    command_id: str
    run_id: str
    workflow: str
    step: str
    attempt: int
    input_json: str
    scheduled_at_ms: int
    timeout_ms: int
    action: str = "run"


class StepError(_Record):
    type: str
    message: str
    traceback: str
    retryable: bool = True


class StepResult(_Record):
    """The outcome of one step attempt."""

    command_id: str
    run_id: str
    workflow: str
    step: str
    attempt: int
    output_json: str | None = None
    error: StepError | None = None
    started_at_ms: int
    finished_at_ms: int
    worker: str = ""
    action: str = "run"
    recorded_json: str | None = None


class JournalKind(StrEnum):
    RUN_STARTED = "RUN_STARTED"
    STEP_SCHEDULED = "STEP_SCHEDULED"
    STEP_SUCCEEDED = "STEP_SUCCEEDED"
    STEP_FAILED = "STEP_FAILED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_FAILED = "RUN_FAILED"
    STEP_RETRY_WAITING = "STEP_RETRY_WAITING"
    STEP_DEAD_LETTERED = "STEP_DEAD_LETTERED"
    STEP_CANCELLED = "STEP_CANCELLED"
    COMPENSATION_SCHEDULED = "COMPENSATION_SCHEDULED"
    COMPENSATION_SUCCEEDED = "COMPENSATION_SUCCEEDED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    COMPENSATION_RETRY_WAITING = "COMPENSATION_RETRY_WAITING"
    COMPENSATION_DEAD_LETTERED = "COMPENSATION_DEAD_LETTERED"
    RUN_COMPENSATING = "RUN_COMPENSATING"
    RUN_COMPENSATED = "RUN_COMPENSATED"
    RUN_REDRIVEN = "RUN_REDRIVEN"


class JournalEvent(_Record):
    """One transition of one run; ``event_id`` is ``run_id/seq``."""

    event_id: str
    run_id: str
    workflow: str
    seq: int
    kind: JournalKind
    at_ms: int
    step: str | None = None
    attempt: int | None = None
    detail_json: str | None = None
    recorded_json: str | None = None


class RoutedDecision(_Record):
    """Where a claim goes."""

    decision_id: str
    claim_id: str
    tenant_id: str
    run_id: str
    status: Literal["ROUTED", "REVIEW", "FAILED"]
    queue: str
    severity: str
    reserve: float
    currency: str
    documents_requested: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    decided_at_ms: int


class DeadLetter(_Record):
    """A record or command the engine could not process."""

    dead_letter_id: str
    reason: str
    error_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    run_id: str | None = None
    step: str | None = None
    payload: bytes
    payload_truncated: bool = False
    at_ms: int
    kind: str = "record"
    workflow: str | None = None
    attempt: int | None = None
    input_json: str | None = None
    attempts_json: str | None = None


class RunControl(_Record):
    """An operator's request about one run (``action``: ``redrive``)."""

    control_id: str
    run_id: str
    workflow: str
    action: str
    step: str | None = None
    dead_letter_id: str | None = None
    requested_at_ms: int
    requested_by: str = ""


class TraceSpan(_Record):
    """A finished span of a run, as `durable trace` reads it back."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str
    run_id: str
    start_unix_nano: int
    end_unix_nano: int
    status: str
    status_message: str | None = None
    attributes_json: str


class StepStatus(StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    WAITING = "WAITING"
    CANCELLED = "CANCELLED"
    COMPENSATING = "COMPENSATING"
    COMPENSATION_WAITING = "COMPENSATION_WAITING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"


class AttemptFailure(_Record):
    """One failed attempt of a step or of its compensation, kept for the dead letter."""

    action: str
    attempt: int
    type: str
    message: str
    traceback: str
    retryable: bool
    started_at_ms: int
    finished_at_ms: int
    worker: str
    recorded_json: str | None = None


class StepState(_Record):
    name: str
    status: StepStatus
    attempt: int = 0
    output_json: str | None = None
    error_json: str | None = None
    due_at_ms: int | None = None
    completed_seq: int | None = None
    comp_attempt: int = 0
    failures: list[AttemptFailure] = Field(default_factory=list)


class RunState(_Record):
    """The orchestrator's state of one run (the run table's value)."""

    run_id: str
    workflow: str
    status: RunStatus
    input_json: str
    seq: int
    started_at_ms: int
    updated_at_ms: int
    steps: list[StepState]
    generation: int = 0
    failure_json: str | None = None


SCHEMA_OF: dict[type[BaseModel], str] = {
    FnolReported: "durable.fnol.FnolReported",
    RoutedDecision: "durable.fnol.RoutedDecision",
    StepCommand: "durable.engine.StepCommand",
    StepResult: "durable.engine.StepResult",
    JournalEvent: "durable.engine.JournalEvent",
    DeadLetter: "durable.engine.DeadLetter",
    RunState: "durable.engine.RunState",
    RunControl: "durable.engine.RunControl",
    TraceSpan: "durable.engine.TraceSpan",
}
