"""FNOL intake: validate a raw report (the JSON-line contract), tokenise it, key it by run.

This is where personal data stops: what :func:`tokenise` returns is what
Kafka sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors import pii
from processors.fnol.workflow import INPUT_TOPIC, run_id_of
from schemas.models import ClaimantTokens, FnolReported, Location, LossType, Photo, Vehicle

MAX_LINE_BYTES = 256 * 1024


class RawClaimant(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not pii.EMAIL.fullmatch(v):
            raise ValueError("not an email address")
        return v


class RawVehicle(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plate: str | None = Field(default=None, max_length=16)
    make: str | None = None
    model: str | None = None
    year: int | None = Field(default=None, ge=1900, le=2100)


class RawLocation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    postcode: str = Field(min_length=1, max_length=16)
    country: str = Field(min_length=2, max_length=2)


class RawPhoto(BaseModel):
    model_config = ConfigDict(extra="ignore")
    uri: str = Field(min_length=1, max_length=2048)
    labels: list[str] = Field(default_factory=list, max_length=50)


class FnolReport(BaseModel):
    """A first notice of loss as upstream sends it (one JSON line). Fields may be added."""

    model_config = ConfigDict(extra="ignore")
    claim_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    tenant_id: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    policy_number: str = Field(min_length=1, max_length=64)
    reported_at: str
    loss_date: str
    loss_type: LossType
    description: str = Field(default="", max_length=10_000)
    location: RawLocation
    claimant: RawClaimant
    vehicle: RawVehicle | None = None
    photos: list[RawPhoto] = Field(default_factory=list, max_length=50)
    estimated_amount: float = Field(ge=0, le=10_000_000)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @field_validator("reported_at")
    @classmethod
    def _instant(cls, v: str) -> str:
        from datetime import datetime

        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v

    @field_validator("loss_date")
    @classmethod
    def _date(cls, v: str) -> str:
        from datetime import date

        date.fromisoformat(v)
        return v


def tokenise(report: FnolReport) -> FnolReported:
    """The Kafka form of a report: claimant and plate as tokens, free text scrubbed."""
    c = report.claimant
    known = {"name": c.name, "email": c.email or "", "phone": c.phone or ""}
    if report.vehicle and report.vehicle.plate:
        known["plate"] = report.vehicle.plate
    vehicle = None
    if report.vehicle is not None:
        v = report.vehicle
        vehicle = Vehicle(
            plate_token=pii.token("plate", v.plate) if v.plate else None, make=v.make, model=v.model, year=v.year
        )
    return FnolReported(
        claim_id=report.claim_id,
        tenant_id=report.tenant_id,
        policy_number=report.policy_number,
        reported_at=report.reported_at,
        loss_date=report.loss_date,
        loss_type=report.loss_type,
        description=pii.scrub(report.description, known),
        location=Location(postcode=report.location.postcode, country=report.location.country),
        claimant=ClaimantTokens(
            name_token=pii.token("name", c.name),
            email_token=pii.token("email", c.email) if c.email else None,
            phone_token=pii.token("phone", c.phone) if c.phone else None,
        ),
        vehicle=vehicle,
        photos=[Photo(uri=p.uri, labels=list(p.labels)) for p in report.photos],
        estimated_amount=report.estimated_amount,
        currency=report.currency,
    )


@dataclass(frozen=True)
class BadLine:
    """A line that is not a valid report, and why."""

    line_no: int
    reason: str


@dataclass(frozen=True)
class GoodLine:
    line_no: int
    run_id: str
    record: FnolReported


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "(line)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_lines(lines: Iterable[str | bytes]) -> Iterator[GoodLine | BadLine]:
    """Validate JSON lines one by one; blank lines are skipped."""
    for n, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        if len(text.encode()) > MAX_LINE_BYTES:
            yield BadLine(n, f"line is larger than {MAX_LINE_BYTES} bytes")
            continue
        try:
            data = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield BadLine(n, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield BadLine(n, f"expected a JSON object, got {type(data).__name__}")
            continue
        try:
            report = FnolReport.model_validate(data)
        except ValidationError as exc:
            yield BadLine(n, _reason(exc))
            continue
        record = tokenise(report)
        yield GoodLine(n, run_id_of(record.model_dump()), record)


__all__ = ["INPUT_TOPIC", "BadLine", "FnolReport", "GoodLine", "parse_lines", "tokenise"]
