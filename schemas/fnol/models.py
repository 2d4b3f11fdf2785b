"""Pydantic mirrors of the FNOL workload's Avro records (``schemas/fnol/*.avsc``)."""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field

from schemas.models import Record

LossType = Literal[
    "auto_collision",
    "auto_theft",
    "auto_glass",
    "property_water",
    "property_fire",
    "property_theft",
    "liability",
]
LOSS_TYPES: tuple[str, ...] = get_args(LossType)


class Location(Record):
    postcode: str
    country: str


class ClaimantTokens(Record):
    name_token: str
    email_token: str | None = None
    phone_token: str | None = None


class Vehicle(Record):
    plate_token: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None


class Photo(Record):
    uri: str
    labels: list[str] = Field(default_factory=list)


class FnolReported(Record):
    """A first notice of loss on Kafka, personal data tokenised."""

    avro_name: ClassVar[str] = "durable.fnol.FnolReported"

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


class RoutedDecision(Record):
    """Where a claim goes."""

    avro_name: ClassVar[str] = "durable.fnol.RoutedDecision"

    decision_id: str
    claim_id: str
    tenant_id: str
    run_id: str
    status: Literal["ROUTED", "REVIEW", "FAILED", "RETRACTED", "ON_HOLD"]
    queue: str
    severity: str
    reserve: float
    currency: str
    documents_requested: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    decided_at_ms: int
    # Set by the engine as it writes the decision (streams.signed_outputs); these stay the schema's last fields.
    signing_key_id: str | None = None
    journal_head: str | None = None
    signature: str | None = None


FNOL_RECORDS: tuple[type[Record], ...] = (FnolReported, RoutedDecision)
