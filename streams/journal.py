"""Runs as their journal tells them: every event of one run, or of every run of a namespace."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from schemas import DecodeError, from_bytes
from schemas.models import JournalEvent
from streams.config import Settings
from streams.kafka import partition_for, read_to_end, reader
from streams.reading import read_all
from streams.topics import Topics, ensure_topics


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
    topics = Topics(settings.namespace)
    out: dict[int, JournalEvent] = {}
    c = reader(settings)
    try:
        p = partition_for(run_id, settings.partitions)
        for msg in read_to_end(c, [TopicPartition(topics.journal, p, 0)]):
            if (msg.key() or b"").decode(errors="replace") != run_id:
                continue
            try:
                event = from_bytes(msg.value() or b"", JournalEvent)
            except DecodeError:
                continue  # not a journal event: nothing of this run
            out[event.seq] = event
    finally:
        c.close()
    return [out[s] for s in sorted(out)]


def runs_of(settings: Settings, run_ids: set[str]) -> dict[str, list[JournalEvent]]:
    """The journals of ``run_ids`` that exist, in seq order (reads only the partitions they live on)."""
    topics = Topics(settings.namespace)
    partitions = sorted({partition_for(r, settings.partitions) for r in run_ids})
    if not partitions:
        return {}
    found: dict[str, dict[int, JournalEvent]] = {}
    ensure_topics(settings, [topics.journal])  # a namespace with no run yet has none
    c = reader(settings)
    try:
        for msg in read_to_end(c, [TopicPartition(topics.journal, p, 0) for p in partitions]):
            key = (msg.key() or b"").decode(errors="replace")
            if key not in run_ids:
                continue
            try:
                event = from_bytes(msg.value() or b"", JournalEvent)
            except DecodeError:
                continue
            found.setdefault(event.run_id, {})[event.seq] = event
    finally:
        c.close()
    return {run_id: [events[s] for s in sorted(events)] for run_id, events in found.items()}
