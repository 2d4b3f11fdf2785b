"""Bounded state: when finished runs leave the run table, and how long each topic keeps its records.

A run's life in the run table (``Settings.run_retention_s``, ``Settings.expired_marker_s``):

1. in flight (RUNNING, COMPENSATING, or waiting out a retry): kept, never expired;
2. finished (COMPLETED, FAILED, COMPENSATED): kept whole for ``run_retention_s``
   after its last change (a redrive of a failed run is possible in that time);
3. expired: its state is replaced by an :class:`~schemas.models.ExpiredRun`
   marker (~100 bytes instead of a few KB: outcome, times, the digest of its
   input), in the changelog (same key, so compaction drops the full state) and
   in RocksDB. A re-submission of its input is recognised as a duplicate and
   ignored, a different input for its id is dead-lettered as a conflict, and
   ``durable status``/``durable replay`` say it expired;
4. forgotten, ``expired_marker_s`` after it expired: a tombstone (null value)
   in the changelog and nothing in RocksDB. From then on its id is unknown: a
   re-submission starts a new run. So duplicates are recognised for
   ``run_retention_s + expired_marker_s`` after a run's last change, and no
   longer; the README says so.

Both steps are checkpoints like any other batch (:mod:`streams.checkpoint`):
changelog first, then RocksDB, fenced; restoring from the changelog applies a
marker as expiry and a tombstone as deletion, so a worker with a wiped state
directory resurrects nothing. Kafka drops tombstones ``delete.retention.ms``
after compaction; a worker whose local copy is older than that may keep a
stale finished state, which its own sweep then expires again.

Topic retention (:func:`streams.topics.topic_config`) is set when a topic is created, by its
role. The embedded broker (Tansu) accepts and ignores ``retention.ms`` and
does not compact (notes/broker-facts.md), so there topics keep everything
until the broker stops; on real Kafka these settings bound them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from processors.engine.transition import input_digest
from schemas import from_bytes
from schemas.codec import peek_schema
from schemas.models import ExpiredRun, RunState
from streams.checkpoint import Checkpoint
from streams.config import Settings
from streams.reading import keyed
from streams.runtable import RunTable, is_finished
from streams.topics import Topics

SWEEP_LIMIT = 1000  # runs expired (and markers forgotten) per partition per sweep: bounds one checkpoint


def expires(settings: Settings) -> bool:
    """Whether finished runs ever leave the run table (``run_retention_s`` 0 keeps them for good)."""
    return settings.run_retention_s > 0


def sweep_every_s(settings: Settings) -> float:
    """How often an orchestrator looks for runs to expire or forget: a tenth of the shorter period, 0.2-60 s."""
    shortest = min(settings.run_retention_s, settings.expired_marker_s)
    return min(60.0, max(0.2, shortest / 10))


def expire_before_ms(settings: Settings, now_ms: int) -> int:
    """Finished runs whose last change is before this expire now."""
    return now_ms - int(settings.run_retention_s * 1000)


def forget_before_ms(settings: Settings, now_ms: int) -> int:
    """Markers that expired before this are forgotten now."""
    return now_ms - int(settings.expired_marker_s * 1000)


def marker_of(state: RunState, now_ms: int) -> ExpiredRun:
    """The marker that replaces a finished run's state when it expires."""
    return ExpiredRun(
        run_id=state.run_id,
        workflow=state.workflow,
        status=state.status.value,
        input_digest=input_digest_of_state(state),
        started_at_ms=state.started_at_ms,
        ended_at_ms=state.updated_at_ms,
        expired_at_ms=now_ms,
        generation=state.generation,
    )


def input_digest_of_state(state: RunState) -> str:
    """The digest of the input a run started with (its ``input_json`` is canonical JSON already)."""
    return input_digest(json.loads(state.input_json))


Resubmission = Literal["duplicate", "conflict"]


def resubmission(marker: ExpiredRun, run_input: object) -> Resubmission:
    """What an input for an expired run's id is: the same input again, or a different one."""
    return "duplicate" if input_digest(run_input) == marker.input_digest else "conflict"


def sweep(settings: Settings, table: RunTable, partitions: set[int], now_ms: int) -> tuple[Checkpoint, bool]:
    """A checkpoint expiring the finished runs past retention and forgetting the markers past theirs.

    Returns it and whether a partition had more than :data:`SWEEP_LIMIT` of either (sweep again soon).
    Runs in flight are not in the finished-runs index, so they are never expired.
    """
    checkpoint = Checkpoint()
    full = False
    for p in sorted(partitions):
        ended = table.ended_before(p, expire_before_ms(settings, now_ms), SWEEP_LIMIT)
        for run_id in ended:
            state = table.get(p, run_id)
            if state is not None and is_finished(state):
                checkpoint.markers[(p, run_id)] = marker_of(state, now_ms)
        gone = table.expired_before(p, forget_before_ms(settings, now_ms), SWEEP_LIMIT)
        checkpoint.forgotten |= {(p, run_id) for run_id in gone}
        full = full or len(ended) >= SWEEP_LIMIT or len(gone) >= SWEEP_LIMIT
    return checkpoint, full


Forgotten = Literal["forgotten"]


def lookup(settings: Settings, run_id: str) -> ExpiredRun | Forgotten | None:
    """Whether a run expired, from the last changelog record of its key (for the CLI, outside a worker).

    Its marker while it has one; ``"forgotten"`` once its tombstone is written (until Kafka's compaction
    drops the tombstone too); None for a run the run table holds, or never held.
    """
    last: bytes | Forgotten | None = None
    for msg in keyed(settings, Topics(settings.namespace).run_changelog, {run_id}):
        value = msg.value()
        last = "forgotten" if value is None else value
    if last is None or last == "forgotten":
        return last
    assert isinstance(last, bytes)
    if peek_schema(last).name != ExpiredRun.avro_name:
        return None
    return from_bytes(last, ExpiredRun)


def describe(marker: ExpiredRun | Forgotten, run_id: str = "") -> str:
    """One line for an operator: how the run ended and when it left the run table."""
    if marker == "forgotten":
        return (
            f"run {run_id} expired: it left the run table after its retention, and its expired marker is gone too"
            " (DURABLE_RUN_RETENTION_S + DURABLE_EXPIRED_MARKER_S); a re-submission would start a new run"
        )

    def at(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")

    return (
        f"run {marker.run_id} ({marker.workflow}) expired: it ended {marker.status} at {at(marker.ended_at_ms)}"
        f" and left the run table at {at(marker.expired_at_ms)} (run retention)"
    )
