"""Dead letters: building them, and what operators do with them (list, show, redrive).

Dead letters are of two sorts. Records the engine could not process at all
(undecodable, unknown schema, oversized: ``kind == "record"``), built here by
:func:`from_message` with an id stable per source record; and steps or
compensations whose retry budget ran out (``kind`` ``step`` or
``compensation``), built by the pure transition. A redrive is a
:class:`RunControl` record on the run's control partition; the orchestrator
that owns the run applies it (a fresh budget for the dead-lettered step) or
ignores it if the run has moved on, so redriving twice is the same as once.
Letters of other kinds, owned by an upper layer (a sink's ``delivery``
letters), are redriven by a :class:`RedriveHandler` that layer registers
under the ``durable.redrive`` entry point group: the same signed request goes
to the handler's topic, which its owner consumes, so this layer never imports
the owner.
A redrive request carries a MAC under the worker secret
(:mod:`streams.authentication`): only a process holding the secret can
redrive, and the ``requested_by`` it records is as good as that secret's
custody.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from confluent_kafka import Message

from processors.engine.status import run_status
from schemas import DecodeError, from_bytes, to_bytes
from schemas.models import DeadLetter, JournalKind, RunControl, RunStatus
from streams import authentication, retention
from streams.config import Settings
from streams.journal import run_journal
from streams.kafka import admin, partition_for
from streams.reading import read_all
from streams.topics import Topics, ensure_topics
from streams.writer import Writer

MAX_PAYLOAD = 64 * 1024
REDRIVE_GROUP = "durable.redrive"
RUN_KINDS = ("step", "compensation")

log = logging.getLogger(__name__)


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


class RedriveHandler(Protocol):
    """How letters of one kind that no run owns are redriven (registered under ``durable.redrive``).

    The request is the same signed :class:`RunControl` a run's redrive is, written to :meth:`topic` on the
    partition the letter's record was read from; the letter's owner consumes it and re-queues the work.
    """

    kind: str

    def topic(self, namespace: str) -> str:
        """The topic the owner reads redrive requests from."""
        ...

    def applied(self, settings: Settings, control: RunControl) -> bool:
        """Whether the owner has taken the request."""
        ...


@cache
def redrive_handlers() -> dict[str, RedriveHandler]:
    """The installed handlers by letter kind; one that fails to load is logged and left out."""
    found: dict[str, RedriveHandler] = {}
    for point in entry_points(group=REDRIVE_GROUP):
        try:
            handler = cast(RedriveHandler, point.load())
        except Exception as exc:  # a broken connector must not stop operators handling the engine's letters
            log.warning("redrive handler %r (%s) not loaded: %s: %s", point.name, point.value, type(exc).__name__, exc)
            continue
        found[handler.kind] = handler
    return found


def redrivable_kinds() -> tuple[str, ...]:
    """Kinds of letters ``durable dlq redrive`` can redrive here."""
    return (*RUN_KINDS, *redrive_handlers())


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
    accepted = authentication.verifying_secrets()
    # A handler's topic is read only if it exists: reading creates a topic, and listing letters writes nothing.
    present = set(admin(settings).list_topics(timeout=10).topics)
    handled = [t for h in redrive_handlers().values() if (t := h.topic(settings.namespace)) in present]
    topics = [Topics(settings.namespace).control, *handled]
    for topic in topics:
        for msg in read_all(settings, topic):
            value = msg.value() or b""
            try:
                control = from_bytes(value, RunControl)
                authentication.verify(topic, control.control_id, value, msg.headers(), accepted)
            except (DecodeError, authentication.Unauthenticated):
                continue  # its consumer dead-letters it; it is no redrive
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
    by_handler = letter.kind in redrive_handlers() and letter.run_id
    if not by_handler and (letter.kind not in RUN_KINDS or not letter.run_id or not letter.workflow):
        raise NotRedrivable(
            f"{letter.dead_letter_id} is an unprocessable {letter.kind} ({letter.error_type}): "
            f"fix its producer and send it again; only {', '.join(redrivable_kinds())} letters can be redriven"
        )
    return RunControl(
        control_id=f"redrive:{letter.dead_letter_id}",
        run_id=letter.run_id or "",
        workflow=letter.workflow or "",
        action="redrive",
        step=letter.step,
        dead_letter_id=letter.dead_letter_id,
        requested_at_ms=int(time.time() * 1000),
        requested_by=requested_by,
    )


@dataclass(frozen=True)
class Request:
    """A redrive request and where it goes: the run's control partition, or a handler's topic."""

    control: RunControl
    topic: str
    partition: int


@dataclass(frozen=True)
class RedriveCheck:
    """What redriving a letter would do: its request and, if it cannot go now, why not.

    ``status`` is the run's status now (``None`` for a letter an upper layer owns, e.g. a sink's
    delivery: its run completed, and only the letter's owner decides).
    """

    request: Request
    already: bool
    status: RunStatus | None
    expired: str | None = None  # why it cannot be: its state left the run table (streams.retention)
    owned: bool = False  # an upper layer's letter (a redrive handler's kind), not a run's

    @property
    def control(self) -> RunControl:
        return self.request.control

    @property
    def stopped(self) -> bool:
        """A run's letter is redriven only once its run has stopped (failed, compensated or paused)."""
        return self.owned or self.status in (RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.PAUSED)


def check_redrive(settings: Settings, entry: Letter, requested_by: str) -> RedriveCheck:
    """The redrive request for ``entry`` and whether it can go now (:class:`NotRedrivable` if it never can).

    The CLI (``durable dlq redrive``) and the gateway decide from this one check.
    """
    letter = entry.letter
    request = request_for(settings, letter, requested_by)
    if letter.kind in redrive_handlers():
        # Owned by an upper layer: its owner applies a request at most once; a second one is "already".
        return RedriveCheck(request, entry.redrive is not None, None, owned=True)
    events = run_journal(settings, request.control.run_id)
    already = any(
        ev.kind is JournalKind.RUN_REDRIVEN and letter.dead_letter_id in (ev.detail_json or "") for ev in events
    )
    marker = retention.lookup(settings, request.control.run_id)
    expired = retention.describe(marker, request.control.run_id) if marker is not None else None
    return RedriveCheck(request, already, run_status(events), expired)


def request_for(settings: Settings, letter: DeadLetter, requested_by: str) -> Request:
    """The redrive request of ``letter`` and its destination (raises :class:`NotRedrivable`)."""
    control = control_for(letter, requested_by)
    handler = redrive_handlers().get(letter.kind)
    if handler is not None:
        # The partition the letter's record was read from: the owner's state for it lives there.
        return Request(control, handler.topic(settings.namespace), letter.source_partition)
    return _to_run(settings, control)


def _to_run(settings: Settings, control: RunControl) -> Request:
    return Request(control, Topics(settings.namespace).control, partition_for(control.run_id, settings.partitions))


def request_redrives(settings: Settings, items: list[Request] | list[RunControl]) -> None:
    """Write redrive requests, each with its MAC, to their topics and wait for the broker's acks.

    A bare :class:`RunControl` is a run's redrive, for the run's control partition.
    """
    secret = authentication.signing_secret()  # no secret, no redrive: raises before anything is written
    requests = [item if isinstance(item, Request) else _to_run(settings, item) for item in items]
    ensure_topics(settings, sorted({r.topic for r in requests}))
    writer = Writer(settings)
    try:
        for request in requests:
            control, topic = request.control, request.topic
            value = to_bytes(control)
            writer.send(
                topic,
                value,
                key=control.run_id,
                partition=request.partition,
                headers=[authentication.header(topic, control.control_id, value, secret)],
            )
        writer.flush(30)
    finally:
        writer.close()


def applied(settings: Settings, item: Request | RunControl) -> bool:
    """Whether the request was applied: the run's journal shows it, or the letter's owner says so."""
    request = item if isinstance(item, Request) else _to_run(settings, item)
    control = request.control
    handler = next((h for h in redrive_handlers().values() if h.topic(settings.namespace) == request.topic), None)
    if handler is not None:
        return handler.applied(settings, control)
    return any(
        e.kind is JournalKind.RUN_REDRIVEN and e.detail_json is not None and control.control_id in e.detail_json
        for e in run_journal(settings, control.run_id)
    )
