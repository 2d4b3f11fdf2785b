"""A run's status as its journal tells it: the one mapping from journal events to run statuses."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.models import JournalEvent, JournalKind, RunStatus

# The run-level events and the status each leaves the run in.
STATUS_AFTER: dict[JournalKind, RunStatus] = {
    JournalKind.RUN_STARTED: RunStatus.RUNNING,
    JournalKind.RUN_REDRIVEN: RunStatus.RUNNING,
    JournalKind.RUN_COMPENSATING: RunStatus.COMPENSATING,
    JournalKind.RUN_COMPLETED: RunStatus.COMPLETED,
    JournalKind.RUN_FAILED: RunStatus.FAILED,
    JournalKind.RUN_COMPENSATED: RunStatus.COMPENSATED,
    JournalKind.RUN_PAUSED: RunStatus.PAUSED,
}
# The events that end a run (until a redrive).
ENDINGS: dict[JournalKind, RunStatus] = {
    kind: status
    for kind, status in STATUS_AFTER.items()
    if status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPENSATED)
}
# The events after which a run rests until someone acts: it ended, or it paused for an operator. Each may be
# followed by an output naming it as its chain ending (a pause's only if the workflow has ``on_pause``).
AT_REST: dict[JournalKind, RunStatus] = {**ENDINGS, JournalKind.RUN_PAUSED: RunStatus.PAUSED}


def run_status(events: Iterable[JournalEvent]) -> RunStatus | None:
    """The run's status after its last run-level event (None: no run-level event at all)."""
    status = None
    for event in events:
        status = STATUS_AFTER.get(event.kind, status)
    return status
