"""What a record on the decisions topic is: a routed decision, or a bad record with the reason.

Pure (no Kafka, no database), so every kind of bad record is unit-tested. A sink
never stops a partition on a record: what cannot be read becomes a dead letter
(kind ``record``) with the reason, and the sink goes on. So does a decision
whose signature does not verify with the sink's keyring (:func:`sink_keyring`,
README "Trust"): it is a dead letter, never a row or a delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import schemas.fnol  # noqa: F401 - FNOL's records (the decision schema), known to the codec
from schemas import DecodeError, from_bytes
from schemas.fnol.models import RoutedDecision
from schemas.models import DeadLetter
from streams import signed_outputs, signing
from streams.signing import Keyring

MAX_PAYLOAD = 64 * 1024


@dataclass(frozen=True)
class Source:
    """Where a record was read: the dead letter names it, and the decisions table keeps it."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Decision:
    """A decision read from the topic, with where it was read."""

    decision: RoutedDecision
    source: Source


@dataclass(frozen=True)
class BadRecord:
    """A record that is no decision a sink can store, and why."""

    reason: str
    error_type: str
    payload: bytes
    source: Source


def sink_keyring() -> Keyring | None:
    """The public keys a sink verifies decisions with, None with ``DURABLE_SIGNING=off``.

    :class:`streams.signing.SigningKeyError` when signing is on and there is no key: a sink refuses to
    start rather than store decisions it cannot check.
    """
    return signing.verifying_keyring()


def read(value: bytes | None, source: Source, keyring: Keyring | None = None) -> Decision | BadRecord:
    """Decode one record of the decisions topic (and, with ``keyring``, check its signature); never raises."""
    payload = value or b""
    try:
        decision = from_bytes(payload, RoutedDecision)
    except DecodeError as exc:
        return BadRecord(str(exc), type(exc).__name__, payload, source)
    if keyring is not None:
        problem, _ = signed_outputs.verify(payload, keyring)
        if problem is not None:
            return BadRecord(f"signature: {problem}", "InvalidSignature", payload, source)
    if any("\x00" in text for text in _texts(decision.model_dump())):
        # PostgreSQL text cannot hold NUL: refused here, with the reason, rather than by the database.
        return BadRecord("decision text contains a NUL character", "InvalidText", payload, source)
    return Decision(decision, source)


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def dead_letter(bad: BadRecord, sink: str) -> DeadLetter:
    """The dead letter for a bad record; its id is stable per source record, so a re-read adds no second one."""
    src = bad.source
    return DeadLetter(
        dead_letter_id=f"{src.topic}:{src.partition}:{src.offset}",
        reason=f"sink {sink}: {bad.reason}"[:2000],
        error_type=bad.error_type,
        source_topic=src.topic,
        source_partition=src.partition,
        source_offset=src.offset,
        payload=bad.payload[:MAX_PAYLOAD],
        payload_truncated=len(bad.payload) > MAX_PAYLOAD,
        at_ms=int(time.time() * 1000),
        kind="record",
    )
