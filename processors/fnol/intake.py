"""FNOL intake: validate a raw report (the JSON contract) and tokenise its personal data.

This is where personal data stops: what :func:`tokenise` returns is what
Kafka sees. The FNOL rules of what is personal (the claimant's name, email
and phone, the vehicle's plate) live here; the tokens are :mod:`processors.pii`'s
and the free-text scrubbing :mod:`processors.redaction`'s. Free text (the
description, the vehicle's make and model) is scrubbed; an identifier (claim
id, policy number, postcode, photo URI) that holds personal data is refused,
since rewriting an identifier would change what it identifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from processors import pii, redaction
from processors.engine import InputRejected, Intake
from schemas.fnol.models import ClaimantTokens, FnolReported, Location, LossType, Photo, Vehicle

SAMPLES = Path(__file__).resolve().parent / "samples" / "fnol.jsonl"


# The contract, field by field: the same rules for a report at the edge and its record on Kafka.
ClaimId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"), AfterValidator(lambda v: _no_personal(v))]
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
PolicyNumber = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_/.-]{1,64}$"), AfterValidator(lambda v: _no_personal(v))
]
Token = Annotated[str, StringConstraints(pattern=r"^pii_[0-9a-f]{16}$")]
ShortText = Annotated[str, StringConstraints(max_length=64)]
Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Amount = Annotated[float, Field(strict=True, ge=0, le=10_000_000, allow_inf_nan=False)]
Year = Annotated[int, Field(strict=True, ge=1900, le=2100)]

EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)
# A loss is reported after it happens; a day's grace covers time zones (a report at 00:30 UTC of a loss "today").
REPORT_GRACE = timedelta(days=1)
URI_SCHEMES = frozenset({"https", "s3", "gs"})
# ISO 4217 codes that are not money a claim is paid in: no currency, testing, precious metals, units of account.
NOT_MONEY = frozenset({"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA"})


def _currency(v: str) -> str:
    if v in NOT_MONEY or pycountry.currencies.get(alpha_3=v) is None or v != v.upper():
        raise ValueError(f"not an ISO 4217 currency code: {v!r}")
    return v


def _country(v: str) -> str:
    if len(v) != 2 or v != v.upper() or pycountry.countries.get(alpha_2=v) is None:
        raise ValueError(f"not an ISO 3166 country code: {v!r}")
    return v


def _no_personal(v: str, ignore: tuple[str, ...] = ()) -> str:
    # The reason names the kinds, never the value: a rejection is logged and shown.
    found = redaction.kinds(v, ignore)
    if found:
        raise ValueError(f"holds personal data ({', '.join(sorted(found))}); identifiers may not")
    return v


def _uri(v: str) -> str:
    scheme, sep, rest = v.partition("://")
    if not sep or scheme.lower() not in URI_SCHEMES or not rest or any(c.isspace() for c in v):
        raise ValueError(f"not a photo URI of an allowed scheme ({', '.join(sorted(URI_SCHEMES))})")
    return _no_personal(v)


def _day(v: str) -> date:
    try:
        day = date.fromisoformat(v)
    except ValueError:
        raise ValueError("not an ISO-8601 date (YYYY-MM-DD)") from None
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"outside {EARLIEST.year}..{LATEST.year}")
    return day


def _instant(v: str) -> datetime:
    try:
        moment = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO-8601 date-time") from None
    if moment.tzinfo is None:
        raise ValueError("an instant needs a time zone (e.g. Z)")
    if not EARLIEST.year <= moment.year <= LATEST.year:
        raise ValueError(f"outside {EARLIEST.year}..{LATEST.year}")
    return moment


Currency = Annotated[str, AfterValidator(_currency)]
Country = Annotated[str, AfterValidator(_country)]
PhotoUri = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_uri)]
LossDate = Annotated[str, AfterValidator(lambda v: _day(v) and v)]
ReportedAt = Annotated[str, AfterValidator(lambda v: _instant(v) and v)]


def _loss_not_after_report(loss_date: str, reported_at: str) -> None:
    if _day(loss_date) > _instant(reported_at).date() + REPORT_GRACE:
        raise ValueError(f"loss_date {loss_date} is after the report ({reported_at})")


class _Strict(BaseModel):
    """No coercion: a number is a number, not a string or a boolean."""

    model_config = ConfigDict(extra="ignore", strict=True)


class RawClaimant(_Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 ()-]{6,40}$")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not redaction.EMAIL_SHAPE.fullmatch(v):
            raise ValueError("not an email address")
        return v


class RawVehicle(_Strict):
    plate: str | None = Field(default=None, max_length=16)
    make: ShortText | None = None
    model: ShortText | None = None
    year: Year | None = None


class RawLocation(_Strict):
    postcode: str = Field(min_length=1, max_length=16)
    country: Country

    @field_validator("postcode")
    @classmethod
    def _postcode(cls, v: str) -> str:
        return _no_personal(v, ("postcode",))  # a postcode is kept as it is; a card number in its place is not


class RawPhoto(_Strict):
    uri: PhotoUri
    labels: list[Label] = Field(default_factory=list, max_length=50)


class FnolReport(_Strict):
    """A first notice of loss as upstream sends it (one JSON object). Fields may be added."""

    claim_id: ClaimId
    tenant_id: TenantId
    policy_number: PolicyNumber
    reported_at: ReportedAt
    loss_date: LossDate
    loss_type: LossType
    description: str = Field(default="", max_length=10_000)
    location: RawLocation
    claimant: RawClaimant
    vehicle: RawVehicle | None = None
    photos: list[RawPhoto] = Field(default_factory=list, max_length=50)
    estimated_amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _dates(self) -> FnolReport:
        _loss_not_after_report(self.loss_date, self.reported_at)
        return self


class _Claimant(_Strict):
    name_token: Token
    email_token: Token | None = None
    phone_token: Token | None = None


class _Vehicle(_Strict):
    plate_token: Token | None = None
    make: ShortText | None = None
    model: ShortText | None = None
    year: Year | None = None


class ReportedContract(_Strict):
    """An FnolReported record as it must be on Kafka, whoever wrote it: the intake's rules, tokens in place of data."""

    claim_id: ClaimId
    tenant_id: TenantId
    policy_number: PolicyNumber
    reported_at: ReportedAt
    loss_date: LossDate
    loss_type: LossType
    description: str = Field(max_length=10_000)
    location: RawLocation
    claimant: _Claimant
    vehicle: _Vehicle | None = None
    photos: list[RawPhoto] = Field(max_length=50)
    estimated_amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _dates(self) -> ReportedContract:
        _loss_not_after_report(self.loss_date, self.reported_at)
        return self


def tokenise(report: FnolReport) -> FnolReported:
    """The Kafka form of a report: claimant and plate as tokens of its tenant, free text scrubbed."""
    tenant = report.tenant_id  # tokens are per tenant: one person is not linkable across tenants
    c = report.claimant
    known = {"name": c.name, "email": c.email or "", "phone": c.phone or ""}
    if report.vehicle and report.vehicle.plate:
        known["plate"] = report.vehicle.plate

    def scrub(text: str) -> str:
        return redaction.redact(text, known, tenant)

    vehicle = None
    if report.vehicle is not None:
        v = report.vehicle
        vehicle = Vehicle(
            plate_token=pii.token("plate", v.plate, tenant) if v.plate else None,
            # Make and model are free text a careless upstream may fill with anything; scrubbed, then cut to fit.
            make=scrub(v.make)[:64] if v.make else v.make,
            model=scrub(v.model)[:64] if v.model else v.model,
            year=v.year,
        )
    return FnolReported(
        claim_id=report.claim_id,
        tenant_id=report.tenant_id,
        policy_number=report.policy_number,
        reported_at=report.reported_at,
        loss_date=report.loss_date,
        loss_type=report.loss_type,
        description=scrub(report.description)[:10_000],
        location=Location(postcode=report.location.postcode, country=report.location.country),
        claimant=ClaimantTokens(
            name_token=pii.token("name", c.name, tenant),
            email_token=pii.token("email", c.email, tenant) if c.email else None,
            phone_token=pii.token("phone", c.phone, tenant) if c.phone else None,
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
        # Some messages quote the value they refused; whatever personal data that held is taken out.
        parts.append(f"{loc}: {redaction.redact(err['msg'])}")
    return "; ".join(parts)


def accept(data: Mapping[str, Any]) -> dict[str, Any]:
    """One raw report -> the FnolReported record Kafka gets, or :class:`InputRejected` saying why."""
    try:
        report = FnolReport.model_validate(data)
    except ValidationError as exc:
        raise InputRejected(_reason(exc), _field(exc)) from None
    return tokenise(report).model_dump()


def check(record: Mapping[str, Any]) -> None:
    """Whether an FnolReported record on Kafka meets the contract (:class:`InputRejected` if not)."""
    try:
        ReportedContract.model_validate(record)
    except ValidationError as exc:
        raise InputRejected(_reason(exc), _field(exc)) from None


def _field(exc: ValidationError) -> str | None:
    first = exc.errors()[0]["loc"] if exc.errors() else ()
    return ".".join(str(x) for x in first) or None


FNOL_INTAKE = Intake(accept=accept, check=check, samples=SAMPLES)

__all__ = ["FNOL_INTAKE", "SAMPLES", "FnolReport", "ReportedContract", "accept", "check", "tokenise"]
