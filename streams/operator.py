"""An operator's word on a run: compensate a PAUSED run, roll back a COMPLETED one.

One path for the CLI (`durable runs compensate|rollback`) and the gateway (`POST /api/v1/runs/{id}/compensate|rollback`):
check the run as its journal tells it, build the signed control, send it to the run's control partition. The pure
transition applies it once (:mod:`processors.engine.changes`); this module only decides whether asking makes sense.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from processors import redaction
from processors.engine.status import run_status
from schemas.models import JournalEvent, JournalKind, RunControl, RunStatus
from streams import deadletters, retention
from streams.config import Settings

Action = Literal["compensate", "rollback"]


@dataclass(frozen=True)
class Word:
    """What an operator's action asks of a run, and how each answer reads."""

    action: Action
    wants: RunStatus
    already: str
    refused: str
    done: str


WORDS: dict[Action, Word] = {
    "compensate": Word(
        "compensate",
        RunStatus.PAUSED,
        already="already compensating on an operator's word",
        refused="only a PAUSED run is compensated on an operator's word",
        done="compensating",
    ),
    "rollback": Word(
        "rollback",
        RunStatus.COMPLETED,
        already="already rolled back on an operator's word",
        refused="only a COMPLETED run is rolled back",
        done="rolling back",
    ),
}


@dataclass(frozen=True)
class OperatorRequest:
    """An operator's request checked against the run's journal: send it only if ``applies``."""

    word: Word
    control: RunControl
    status: RunStatus | None
    already: bool
    expired: str | None  # why it cannot be: the run's state left the run table (streams.retention)

    @property
    def applies(self) -> bool:
        return not self.already and self.expired is None and self.status is self.word.wants

    @property
    def why_not(self) -> str:
        """Why it does not apply (empty when it does, or was applied already)."""
        if self.already:
            return ""
        if self.status is not self.word.wants:
            shown = self.status.value if self.status is not None else "UNKNOWN"
            return f"run {self.control.run_id} is {shown}: {self.word.refused}"
        if self.expired is not None:
            return f"{self.expired}; a {self.word.action} needs the run's state, which is gone (its journal is kept)"
        return ""


def check(
    settings: Settings, events: list[JournalEvent], action: Action, reason: str, requested_by: str
) -> OperatorRequest | None:
    """The request for the run whose journal is ``events`` (None: no such run).

    ``reason`` is an operator's free text, bound for the journal and the run's next output: personal data in it
    (an email address, a phone number, ...) is redacted first, as in a claim's description.
    """
    if not events:
        return None
    run_id = events[0].run_id
    control = RunControl(
        control_id=f"{action}:{run_id}",  # one per run: a repeat is recognisable, and the engine applies it once
        run_id=run_id,
        workflow=events[0].workflow,
        action=action,
        requested_at_ms=int(time.time() * 1000),
        requested_by=requested_by,
        reason=redaction.redact(reason.strip())[:500],
    )
    already = applied(events, control)
    status = run_status(events)
    word = WORDS[action]
    marker = retention.lookup(settings, run_id) if not already and status is word.wants else None
    expired = retention.describe(marker, run_id) if marker is not None else None
    return OperatorRequest(word, control, status, already, expired)


def applied(events: list[JournalEvent], control: RunControl) -> bool:
    """Whether the run's journal shows ``control`` applied (its compensation began on it)."""
    return any(e.kind is JournalKind.RUN_COMPENSATING and control.control_id in (e.detail_json or "") for e in events)


def send(settings: Settings, request: OperatorRequest) -> None:
    """Write the signed control to the run's control partition (raises WorkerSecretError without the secret)."""
    deadletters.request_redrives(settings, [request.control])
