"""Runs as their journal tells them: every event of one run, or of every run of a namespace."""

from __future__ import annotations

from schemas import DecodeError, from_bytes
from schemas.models import JournalEvent
from streams.config import Settings
from streams.reading import keyed, read_all
from streams.topics import Topics


def journals(settings: Settings) -> dict[str, list[JournalEvent]]:
    """Every run's journal in this namespace, by run id, in seq order (each event once)."""
    runs: dict[str, dict[int, JournalEvent]] = {}
    for msg in read_all(settings, Topics(settings.namespace).journal):
        try:
            event = from_bytes(msg.value() or b"", JournalEvent)
        except DecodeError:
            continue
        runs.setdefault(event.run_id, {})[event.seq] = event
    return {run_id: [events[s] for s in sorted(events)] for run_id, events in runs.items()}


def run_journal(settings: Settings, run_id: str) -> list[JournalEvent]:
    """Every journal event of one run, in order (read from the run's journal partition)."""
    return runs_of(settings, {run_id}).get(run_id, [])


def runs_of(settings: Settings, run_ids: set[str]) -> dict[str, list[JournalEvent]]:
    """The journals of ``run_ids`` that exist, in seq order (reads only the partitions they live on)."""
    found: dict[str, dict[int, JournalEvent]] = {}
    for msg in keyed(settings, Topics(settings.namespace).journal, run_ids):
        try:
            event = from_bytes(msg.value() or b"", JournalEvent)
        except DecodeError:
            continue  # not a journal event: nothing of these runs
        found.setdefault(event.run_id, {})[event.seq] = event
    return {run_id: [events[s] for s in sorted(events)] for run_id, events in found.items()}
