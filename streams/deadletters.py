"""Dead letters: building them, and what operators do with them (list, show, redrive).

Dead letters are of two sorts. Records the engine could not process at all
(undecodable, unknown schema, oversized: ``kind == "record"``), built here by
:func:`from_message` with an id stable per source record; and steps or
compensations whose retry budget ran out (``kind`` ``step`` or
``compensation``), built by the pure transition. A redrive is a
:class:`RunControl` record on the run's control partition; the orchestrator
that owns the run applies it (a fresh budget for the dead-lettered step) or
ignores it if the run has moved on, so redriving twice is the same as once.
A redrive request carries a MAC under the worker secret
(:mod:`streams.authentication`): only a process holding the secret can
redrive, and the ``requested_by`` it records is as good as that secret's
custody.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from processors.engine.status import run_status
from schemas import DecodeError, from_bytes, to_bytes
from schemas.models import DeadLetter, JournalKind, RunControl, RunStatus
from streams import authentication
from streams.config import Settings
from streams.journal import run_journal
from streams.kafka import partition_for
from streams.reading import read_all
from streams.topics import Topics, ensure_topics
from streams.writer import Writer

MAX_PAYLOAD = 64 * 1024


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """Stable per source record, so re-processing the record cannot add a second one."""
    return f"{topic}:{partition}:{offset}"


def from_message(
    msg: Message, reason: str, error_type: str, run_id: str | None = None, step: str | None = None
) -> DeadLetter:
    payload = msg.value() or b""
    topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
    return DeadLetter(
        dead_letter_id=dead_letter_id(topic, partition, offset),
        reason=reason[:2000],
        error_type=error_type,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        run_id=run_id,
        step=step,
        payload=payload[:MAX_PAYLOAD],
        payload_truncated=len(payload) > MAX_PAYLOAD,
        at_ms=int(time.time() * 1000),
    )


def for_event(run_id: str, src: str, reason: str, error_type: str, workflow: str) -> DeadLetter:
    """A letter for an event that came from no record (a fired timer) and could not be applied."""
    return DeadLetter(
        dead_letter_id=f"{run_id}/rejected/{src}",
        reason=reason[:2000],
        error_type=error_type,
        source_topic="",
        source_partition=-1,
        source_offset=-1,
        run_id=run_id,
        payload=b"",
        at_ms=int(time.time() * 1000),
        workflow=workflow,
    )


# ---------------------------------------------------------------- what operators do with them


class NotRedrivable(ValueError):
    """This dead letter cannot be redriven (e.g. a record that was never decodable)."""


@dataclass(frozen=True)
class Letter:
    """A dead letter and whether (and by which request) it was redriven."""

    letter: DeadLetter
    redrive: RunControl | None

    @property
    def status(self) -> str:
        return "redriven" if self.redrive is not None else "open"


def redrives(settings: Settings) -> dict[str, RunControl]:
    """Every authenticated redrive ever requested in this namespace, by dead letter id (the first one wins)."""
    found: dict[str, RunControl] = {}
    topic = Topics(settings.namespace).control
    accepted = authentication.verifying_secrets()
    for msg in read_all(settings, topic):
        value = msg.value() or b""
        try:
            control = from_bytes(value, RunControl)
            authentication.verify(topic, control.control_id, value, msg.headers(), accepted)
        except (DecodeError, authentication.Unauthenticated):
            continue  # the orchestrator dead-letters it; it is no redrive
        if control.action == "redrive" and control.dead_letter_id and control.dead_letter_id not in found:
            found[control.dead_letter_id] = control
    return found


def letters(settings: Settings) -> list[Letter]:
    """Every dead letter of the namespace, oldest first, each once."""
    done = redrives(settings)
    seen: dict[str, Letter] = {}
    for msg in read_all(settings, Topics(settings.namespace).dead_letters):
        try:
            letter = from_bytes(msg.value() or b"", DeadLetter)
        except DecodeError:
            continue
        if letter.dead_letter_id not in seen:
            seen[letter.dead_letter_id] = Letter(letter, done.get(letter.dead_letter_id))
    return sorted(seen.values(), key=lambda entry: (entry.letter.at_ms, entry.letter.dead_letter_id))


def shown(entry: Letter) -> dict[str, Any]:
    """One letter as ``durable dlq show`` and the gateway show it: why, where from, every attempt, the input."""
    letter = entry.letter
    value = letter.model_dump(mode="json", exclude={"payload", "attempts_json", "input_json"})
    value["status"] = entry.status
    if entry.redrive is not None:
        value["redrive"] = entry.redrive.model_dump(mode="json")
    value["payload"] = letter.payload[:512].decode("utf-8", errors="backslashreplace") if letter.payload else ""
    value["input"] = json.loads(letter.input_json) if letter.input_json else None
    value["attempts"] = json.loads(letter.attempts_json) if letter.attempts_json else []
    return value


def find(settings: Settings, letter_id: str) -> Letter | None:
    return next((entry for entry in letters(settings) if entry.letter.dead_letter_id == letter_id), None)


def control_for(letter: DeadLetter, requested_by: str) -> RunControl:
    """The redrive request for ``letter``: its id depends only on the letter, so a repeat is recognisable.

    ``requested_by`` is recorded by the orchestrator only because the request is signed with the worker
    secret (:func:`request_redrives`); the CLI sets it to the OS user running it.
    """
    if letter.kind not in ("step", "compensation") or not letter.run_id or not letter.workflow:
        raise NotRedrivable(
            f"{letter.dead_letter_id} is an unprocessable {letter.kind} ({letter.error_type}): "
            "fix its producer and send it again; only steps and compensations can be redriven"
        )
    return RunControl(
        control_id=f"redrive:{letter.dead_letter_id}",
        run_id=letter.run_id,
        workflow=letter.workflow,
        action="redrive",
        step=letter.step,
        dead_letter_id=letter.dead_letter_id,
        requested_at_ms=int(time.time() * 1000),
        requested_by=requested_by,
    )


@dataclass(frozen=True)
class RedriveCheck:
    """What redriving a letter would do: its request, whether it was applied already, the run's status now."""

    control: RunControl
    already: bool
    status: RunStatus | None

    @property
    def stopped(self) -> bool:
        """Only a run that has stopped (failed or compensated) is redriven."""
        return self.status in (RunStatus.FAILED, RunStatus.COMPENSATED)


def check_redrive(settings: Settings, letter: DeadLetter, requested_by: str) -> RedriveCheck:
    """The redrive request for ``letter`` and whether it can go now (:class:`NotRedrivable` if it never can).

    The CLI (``durable dlq redrive``) and the gateway decide from this one check.
    """
    control = control_for(letter, requested_by)
    events = run_journal(settings, control.run_id)
    already = any(
        ev.kind is JournalKind.RUN_REDRIVEN and letter.dead_letter_id in (ev.detail_json or "") for ev in events
    )
    return RedriveCheck(control, already, run_status(events))


def request_redrives(settings: Settings, controls: list[RunControl]) -> None:
    """Write redrive requests, each with its MAC, to the runs' control partitions and wait for the broker's acks."""
    topic = Topics(settings.namespace).control
    secret = authentication.signing_secret()  # no secret, no redrive: raises before anything is written
    ensure_topics(settings, [topic])
    writer = Writer(settings)
    try:
        for control in controls:
            value = to_bytes(control)
            writer.send(
                topic,
                value,
                key=control.run_id,
                partition=partition_for(control.run_id, settings.partitions),
                headers=[authentication.header(topic, control.control_id, value, secret)],
            )
        writer.flush(30)
    finally:
        writer.close()


def applied(settings: Settings, control: RunControl) -> bool:
    """Whether the run's journal shows this redrive applied."""
    return any(
        e.kind is JournalKind.RUN_REDRIVEN and e.detail_json is not None and control.control_id in e.detail_json
        for e in run_journal(settings, control.run_id)
    )
