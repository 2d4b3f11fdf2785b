"""Pydantic models that mirror the engine's Avro schemas, one model per ``*.avsc``.

They give the runtime typed records. Each model names its Avro record in
``avro_name`` (what :func:`schemas.to_bytes` encodes with); a unit test checks
that the fields agree. Workload records (FNOL's) live with their workload, in
``schemas/fnol/``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """A record with an Avro schema: ``avro_name`` is the schema's full name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    avro_name: ClassVar[str] = ""


class StepCommand(Record):
    """Run one attempt of one step; ``command_id`` is ``run_id/step/attempt``."""

    avro_name: ClassVar[str] = "durable.engine.StepCommand"


    command_id: str
    run_id: str
    workflow: str
    step: str
    attempt: int
    input_json: str
    scheduled_at_ms: int
    timeout_ms: int
    action: str = "run"
    workflow_version: str | None = None


class StepError(Record):
    type: str
    message: str
    traceback: str
    retryable: bool = True


class StepResult(Record):
    """The outcome of one step attempt."""

    avro_name: ClassVar[str] = "durable.engine.StepResult"


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
    settings_json: str | None = None


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
    INPUT_CONFLICT = "INPUT_CONFLICT"
    RUN_PAUSED = "RUN_PAUSED"


class JournalEvent(Record):
    """One transition of one run; ``event_id`` is ``run_id/seq``."""

    avro_name: ClassVar[str] = "durable.engine.JournalEvent"


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
    settings_json: str | None = None
    workflow_version: str | None = None
    prev_hash: str | None = None


class DeadLetter(Record):
    """A record or command the engine could not process."""

    avro_name: ClassVar[str] = "durable.engine.DeadLetter"


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


class RunControl(Record):
    """An operator's request about one run (``action``: ``redrive`` or ``compensate``)."""

    avro_name: ClassVar[str] = "durable.engine.RunControl"


    control_id: str
    run_id: str
    workflow: str
    action: str
    step: str | None = None
    dead_letter_id: str | None = None
    requested_at_ms: int
    requested_by: str = ""
    reason: str | None = None


class TraceSpan(Record):
    """A finished span of a run, as `durable trace` reads it back."""

    avro_name: ClassVar[str] = "durable.engine.TraceSpan"


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
    PAUSED = "PAUSED"  # a step that pauses on exhaustion was dead-lettered: waits for a redrive or an operator's undo


class AttemptFailure(Record):
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


class StepState(Record):
    name: str
    status: StepStatus
    attempt: int = 0
    output_json: str | None = None
    error_json: str | None = None
    due_at_ms: int | None = None
    completed_seq: int | None = None
    comp_attempt: int = 0
    failures: list[AttemptFailure] = Field(default_factory=list)


class ParkedEvent(Record):
    """A record that reached a blocked run (its version not loaded), kept in its state until it can be applied."""

    kind: str
    value: bytes
    at_ms: int


class RunState(Record):
    """The orchestrator's state of one run (the run table's value)."""

    avro_name: ClassVar[str] = "durable.engine.RunState"


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
    conflicts: list[str] = Field(default_factory=list)
    received_at_ms: int = 0
    version: str | None = None
    blocked: str | None = None
    parked: list[ParkedEvent] = Field(default_factory=list)
    chain_head: str | None = None


class ExpiredRun(Record):
    """What the run table keeps of a finished run past its retention (streams.retention)."""

    avro_name: ClassVar[str] = "durable.engine.ExpiredRun"


    run_id: str
    workflow: str
    status: str
    input_digest: str
    started_at_ms: int
    ended_at_ms: int
    expired_at_ms: int
    generation: int = 0


ENGINE_RECORDS: tuple[type[Record], ...] = (
    StepCommand,
    StepResult,
    JournalEvent,
    DeadLetter,
    RunState,
    RunControl,
    TraceSpan,
    ExpiredRun,
)
SCHEMA_OF: dict[type[BaseModel], str] = {model: model.avro_name for model in ENGINE_RECORDS}
