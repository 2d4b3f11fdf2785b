"""Every run's latest state, from the run changelog: what ``durable runs list`` counts by version and status.

The compacted changelog holds each run's last state (the orchestrators'
run table, :mod:`streams.runtable`), so reading it to its end answers
"which runs are in flight on which version" without asking a worker. Runs
recorded before versions existed have no version: listed as ``-``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from schemas import DecodeError, from_bytes
from schemas.codec import peek_schema
from schemas.models import RunState
from streams.config import Settings
from streams.reading import read_all
from streams.topics import Topics

UNVERSIONED = "-"


@dataclass(frozen=True)
class RunSummary:
    """One run as the list shows it."""

    run_id: str
    workflow: str
    version: str
    status: str
    blocked: str | None
    parked: int
    updated_at_ms: int


def latest_states(settings: Settings) -> list[RunSummary]:
    """The last state of every run the changelog still holds (expired markers and tombstones left out)."""
    last: dict[str, RunSummary | None] = {}
    for msg in read_all(settings, Topics(settings.namespace).run_changelog):
        key = (msg.key() or b"").decode(errors="replace")
        value = msg.value()
        if value is None:
            last[key] = None  # forgotten
            continue
        try:
            if peek_schema(value).name != RunState.avro_name:
                last[key] = None  # an expired run's marker
                continue
            state = from_bytes(value, RunState)
        except DecodeError:
            continue  # a record this client cannot read is not a run it can list
        last[key] = RunSummary(
            run_id=state.run_id,
            workflow=state.workflow,
            version=state.version or UNVERSIONED,
            status=state.status.value,
            blocked=state.blocked,
            parked=len(state.parked),
            updated_at_ms=state.updated_at_ms,
        )
    return [s for s in last.values() if s is not None]


def select(
    runs: list[RunSummary], version: str | None = None, status: str | None = None, blocked: bool = False
) -> list[RunSummary]:
    """The runs of ``version``, in ``status`` (case-insensitive), blocked only if asked."""
    return [
        r
        for r in runs
        if (version is None or r.version == version)
        and (status is None or r.status == status.upper())
        and (not blocked or r.blocked is not None)
    ]


def counts(runs: list[RunSummary]) -> Counter[tuple[str, str, str]]:
    """How many runs per (workflow, version, status)."""
    return Counter((r.workflow, r.version, r.status) for r in runs)
