"""FNOL intake: validate a raw report (the JSON contract) and tokenise its personal data.

This is where personal data stops: what :func:`tokenise` returns is what
Kafka sees. The FNOL rules of what is personal (the claimant's name, email
and phone, the vehicle's plate) live here; the tokens and the free-text
scrubbing are :mod:`processors.pii`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from processors import pii
from processors.engine import InputRejected, Intake
from schemas.fnol.models import ClaimantTokens, FnolReported, Location, LossType, Photo, Vehicle

SAMPLES = Path(__file__).resolve().parent / "samples" / "fnol.jsonl"


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


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "(line)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def accept(data: Mapping[str, Any]) -> dict[str, Any]:
    """One raw report -> the FnolReported record Kafka gets, or :class:`InputRejected` saying why."""
    try:
        report = FnolReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        raise InputRejected(_reason(exc), ".".join(str(x) for x in first) or None) from None
    return tokenise(report).model_dump()


FNOL_INTAKE = Intake(accept=accept, samples=SAMPLES)

__all__ = ["FNOL_INTAKE", "SAMPLES", "FnolReport", "accept", "tokenise"]
