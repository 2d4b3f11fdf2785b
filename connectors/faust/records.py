"""Typed Faust records mirroring our public schemas: a reported claim, a decision, a dead letter.

Each record's Faust namespace is its Avro full name, which is how the
``durable`` codec knows the schema to write it with. Fields follow the Avro
schemas (``schemas/fnol/*.avsc``, ``schemas/dead_letter.avsc``); ``coerce``
turns the nested dicts the Avro reader gives into the nested records.
"""

from __future__ import annotations

from typing import Optional

import faust

from connectors.faust.codec import CODEC_NAME

# Faust reads these annotations at class creation, so they stay in the typing forms it understands.
# ruff: noqa: UP045


class Location(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.Location", coerce=True):
    postcode: str
    country: str


class ClaimantTokens(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.ClaimantTokens", coerce=True):
    name_token: str
    email_token: Optional[str] = None
    phone_token: Optional[str] = None


class Vehicle(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.Vehicle", coerce=True):
    plate_token: Optional[str] = None
    make: Optional[str] = None
    model: Optional[str] = None
    year: Optional[int] = None


class Photo(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.Photo", coerce=True):
    uri: str
    labels: list[str]


class FnolReported(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.FnolReported", coerce=True):
    """A first notice of loss as it is on Kafka (personal data already tokenised)."""

    claim_id: str
    tenant_id: str
    policy_number: str
    reported_at: str
    loss_date: str
    loss_type: str
    description: str
    location: Location
    claimant: ClaimantTokens
    vehicle: Optional[Vehicle]
    photos: list[Photo]
    estimated_amount: float
    currency: str


class RoutedDecision(faust.Record, serializer=CODEC_NAME, namespace="durable.fnol.RoutedDecision", coerce=True):
    """Where a claim goes. A redriven run writes a newer decision (new ``decision_id``, same ``run_id``)."""

    decision_id: str
    claim_id: str
    tenant_id: str
    run_id: str
    status: str
    queue: str
    severity: str
    reserve: float
    currency: str
    documents_requested: list[str]
    reasons: list[str]
    decided_at_ms: int
    # The engine's signature (README "Trust"): written back unchanged, the bytes still verify.
    signing_key_id: Optional[str] = None
    journal_head: Optional[str] = None
    signature: Optional[str] = None


class DeadLetter(faust.Record, serializer=CODEC_NAME, namespace="durable.engine.DeadLetter", coerce=True):
    """A record or command the engine (or a sink) could not process, with the reason."""

    dead_letter_id: str
    reason: str
    error_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    run_id: Optional[str]
    step: Optional[str]
    payload: bytes
    payload_truncated: bool
    at_ms: int
    kind: str
    workflow: Optional[str]
    attempt: Optional[int]
    input_json: Optional[str]
    attempts_json: Optional[str]
