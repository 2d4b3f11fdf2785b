"""Audit: recompute each run's hash chain from the journal as written, and check its outputs' signatures.

A run verifies when, in the order its journal partition holds them, its
events are seq 1, 2, 3... without gaps (a re-written event, byte-identical
after a crash, counts once), each names the hash of the one before
(:mod:`processors.engine.chain`; the first names none), and every output of
the run is signed by a key of the keyring over its bytes
(:mod:`streams.signed_outputs`) and carries as ``journal_head`` the hash of
one of the run's ending events. The first broken link is reported with where
it is (topic, partition, offset) and what differs.

An evidence bundle (:func:`bundle`) holds a run's journal and outputs as the
exact bytes read, with their places, and the public keyring: it verifies
offline, with no broker.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from processors.engine import chain
from processors.engine.status import AT_REST
from schemas import DecodeError, from_bytes
from schemas.models import JournalEvent
from streams import signed_outputs
from streams.config import Settings
from streams.reading import keyed, read_all
from streams.signing import Keyring
from streams.topics import Topics

BUNDLE_VERSION = 1


@dataclass(frozen=True)
class Written:
    """One record as read from its topic: where it is and its exact value bytes."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "value_b64": base64.b64encode(self.value).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Written:
        value = base64.b64decode(data["value_b64"])
        return cls(str(data["topic"]), int(data["partition"]), int(data["offset"]), str(data["key"]), value)

    @classmethod
    def of(cls, msg: Message) -> Written:
        key = msg.key() or b""
        return cls(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            key.decode(errors="replace") if isinstance(key, bytes) else str(key),
            msg.value() or b"",
        )


@dataclass
class RunAudit:
    """What verifying one run found: OK, or the first problem and where it is."""

    run_id: str
    events: int = 0
    outputs: int = 0
    problem: str | None = None
    where: str = ""
    key_ids: set[str] = field(default_factory=set)
    record: Written | None = None  # the record named by ``where``, when there is one

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, where: str | Written, problem: str) -> RunAudit:
        if isinstance(where, Written):
            self.record, where = where, where.where
        self.where, self.problem = where, problem
        return self


def verify_run(run_id: str, journal: list[Written], outputs: list[Written], keyring: Keyring) -> RunAudit:
    """Check one run's chain (journal records in partition order) and its outputs' signatures."""
    audit = RunAudit(run_id)
    seen: dict[str, bytes] = {}
    head: str | None = None
    endings: set[str] = set()
    ordered = sorted(journal, key=lambda r: (r.partition, r.offset))
    for i, rec in enumerate(ordered):
        try:
            event = from_bytes(rec.value, JournalEvent)
        except DecodeError as exc:
            return audit.fail(rec, f"not a journal event: {exc}")
        if event.event_id in seen:
            if seen[event.event_id] == rec.value:
                continue  # the same event written again after a crash: one event
            return audit.fail(rec, f"event {event.event_id} written twice with different contents")
        expected = audit.events + 1
        if event.seq != expected:
            later = expected in {_seq(r) for r in ordered[i + 1 :]}
            what = "out of order" if event.seq < expected or later else "missing (deleted?)"
            return audit.fail(rec, f"expected seq {expected}, found seq {event.seq} ({event.kind.value}): {what}")
        if event.prev_hash != head:
            return audit.fail(
                rec.where,
                f"seq {event.seq} ({event.kind.value}) names previous hash {_short(event.prev_hash)}, "
                f"the chain says {_short(head)}: an event before it was altered, or this one was",
            )
        seen[event.event_id] = rec.value
        head = chain.hash_value(rec.value)
        if event.kind in AT_REST:  # an output names the chain where its run ended or paused
            endings.add(head)
        audit.events += 1
    if not audit.events:
        return audit.fail("", "no journal events")
    signed: dict[bytes, None] = {}
    for rec in sorted(outputs, key=lambda r: (r.partition, r.offset)):
        if rec.value in signed:
            continue
        problem, record = signed_outputs.verify(rec.value, keyring)
        if problem is not None:
            return audit.fail(rec, f"output: {problem}")
        if record.get("journal_head") not in endings:
            return audit.fail(
                rec.where,
                f"output's journal_head {_short(record.get('journal_head'))} is not the hash of an ending event of the run's chain",
            )
        audit.key_ids.add(str(record.get("signing_key_id")))
        signed[rec.value] = None
        audit.outputs += 1
    return audit


def _seq(rec: Written) -> int | None:
    try:
        return from_bytes(rec.value, JournalEvent).seq
    except DecodeError:
        return None


def _short(digest: object) -> str:
    return "none" if digest is None else str(digest)[:16]


def _by_key(records: Iterable[Written]) -> dict[str, list[Written]]:
    out: dict[str, list[Written]] = {}
    for r in records:
        out.setdefault(r.key, []).append(r)
    return out


@dataclass(frozen=True)
class Evidence:
    """Runs' journal and output records, as read."""

    journal: dict[str, list[Written]]
    outputs: dict[str, list[Written]]


def read(settings: Settings, output_topics: list[str], run_ids: set[str] | None = None) -> Evidence:
    """The journal and output records of ``run_ids`` (every run when None), exact bytes and places."""
    topics = Topics(settings.namespace)

    def load(topic: str) -> list[Written]:
        msgs = read_all(settings, topic) if run_ids is None else keyed(settings, topic, run_ids)
        return [Written.of(m) for m in msgs if m.value() is not None]

    journal = _by_key(load(topics.journal))
    outputs: dict[str, list[Written]] = {}
    for topic in output_topics:
        for key, recs in _by_key(load(topic)).items():
            outputs.setdefault(key, []).extend(recs)
    return Evidence(journal, outputs)


def started_ms(records: list[Written]) -> int | None:
    """When the run started, by its first event (None if unreadable)."""
    for r in sorted(records, key=lambda r: r.offset):
        try:
            return from_bytes(r.value, JournalEvent).at_ms
        except DecodeError:
            return None
    return None


def verify_all(evidence: Evidence, keyring: Keyring, since_ms: int | None = None) -> list[RunAudit]:
    """Every run of ``evidence`` (started at or after ``since_ms``), verified, by run id."""
    audits = []
    for run_id in sorted(evidence.journal):
        records = evidence.journal[run_id]
        if since_ms is not None and (started_ms(records) or 0) < since_ms:
            continue
        audits.append(verify_run(run_id, records, evidence.outputs.get(run_id, []), keyring))
    return audits


def bundle(run_id: str, evidence: Evidence, keyring: Keyring) -> dict[str, Any]:
    """A self-contained evidence bundle of one run: its journal, its outputs, the public keyring."""
    return {
        "bundle": "durable-audit",
        "version": BUNDLE_VERSION,
        "run_id": run_id,
        "journal": [r.to_json() for r in evidence.journal.get(run_id, [])],
        "outputs": [r.to_json() for r in evidence.outputs.get(run_id, [])],
        "keyring": keyring.to_json(),
    }


def verify_bundle(data: dict[str, Any], keyring: Keyring | None = None) -> RunAudit:
    """Verify a bundle offline, with ``keyring`` (trusted) or else the keyring the bundle carries."""
    if data.get("bundle") != "durable-audit" or data.get("version") != BUNDLE_VERSION:
        raise ValueError("not a durable audit bundle of a known version")
    ring = keyring or Keyring.from_json(data["keyring"])
    journal = [Written.from_json(r) for r in data["journal"]]
    outputs = [Written.from_json(r) for r in data["outputs"]]
    return verify_run(str(data["run_id"]), journal, outputs, ring)
