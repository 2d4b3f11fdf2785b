"""A run as its journal tells it, for every reader (``durable status``, the gateway, the console).

:func:`view` folds one run's journal events into its status, its times, its
input (the RUN_STARTED detail: tokenised, as Kafka has it) and its output (what
its last ending event carries, e.g. a routed decision); :func:`list_runs` does it for
every run of a namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from processors.engine.status import AT_REST, run_status
from schemas.models import JournalEvent, JournalKind, RunStatus
from streams.config import Settings
from streams.journal import journals


@dataclass(frozen=True)
class RunView:
    """One run: its status after its last run-level event, its first and last event times, input and output."""

    run_id: str
    workflow: str
    status: RunStatus | None
    started_ms: int
    last_ms: int
    events: list[JournalEvent]
    input: dict[str, Any] | None
    output: dict[str, Any] | None

    @property
    def status_name(self) -> str:
        return self.status.value if self.status is not None else "UNKNOWN"

    @property
    def version(self) -> str | None:
        """The workflow version the run started on (None: journaled before versions were recorded)."""
        return next((e.workflow_version for e in self.events if e.workflow_version), None)

    @property
    def ended(self) -> bool:
        return self.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPENSATED)

    @property
    def at_rest(self) -> bool:
        """Ended, or paused until an operator acts: nothing more happens on its own."""
        return self.ended or self.status is RunStatus.PAUSED


def _detail(event: JournalEvent) -> dict[str, Any] | None:
    try:
        value = json.loads(event.detail_json) if event.detail_json else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def output_of(ending: JournalEvent) -> dict[str, Any] | None:
    """What an ending (or pause) says the run's output is: ``on_failure``'s or ``on_pause``'s, if anything."""
    detail = _detail(ending)
    if detail is None or ending.kind is JournalKind.RUN_COMPLETED:
        return detail
    output = detail.get("output")
    return output if isinstance(output, dict) else None


def view(events: list[JournalEvent]) -> RunView | None:
    """The run these events (one run's, in seq order) tell of; None for no events."""
    if not events:
        return None
    started = next((e for e in events if e.kind is JournalKind.RUN_STARTED), None)
    endings = [e for e in events if e.kind in AT_REST]  # a paused run's output is what it wrote on pausing
    return RunView(
        run_id=events[0].run_id,
        workflow=events[0].workflow,
        status=run_status(events),
        started_ms=events[0].at_ms,
        last_ms=events[-1].at_ms,
        events=events,
        input=_detail(started) if started is not None else None,
        output=output_of(endings[-1]) if endings else None,
    )


def list_runs(
    settings: Settings, status: str | None = None, since_ms: int | None = None, limit: int = 100
) -> list[RunView]:
    """The namespace's runs, newest first: those in ``status`` (a RunStatus name) started at or after ``since_ms``."""
    found = []
    for events in journals(settings).values():
        run = view(events)
        if run is None or (status is not None and run.status_name != status):
            continue
        if since_ms is not None and run.started_ms < since_ms:
            continue
        found.append(run)
    found.sort(key=lambda r: (r.started_ms, r.run_id), reverse=True)
    return found[:limit]
