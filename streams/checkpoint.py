"""The orchestrator's checkpoint: one batch's writes, in the order that makes a crash at any point harmless.

:meth:`Checkpoint.commit` writes, in this order:

0. with a fence (:mod:`streams.fencing`), drops what it holds for partitions
   another orchestrator has claimed since this one did (a zombie's batch);
1. the outgoing records the transitions asked for (step commands, journal
   events, outputs, dead letters) to partition ``p`` of their topics, and
   waits for the broker's acknowledgements; records whose id the take-over
   scan found already written are skipped (:mod:`streams.recovery`);
2. the changed run states to the compacted changelog, and waits for the
   acknowledgements; an expired run's marker or a forgotten run's tombstone
   (:mod:`streams.retention`) goes the same way, under the run's key;
3. the states into the local run table (RocksDB), with the changelog offsets
   they bring it to, in one atomic write batch per partition;
4. the input offsets, committed asynchronously: a commit lost in a crash only
   redelivers inputs whose effect the changelog already holds, which the
   transition ignores.

A crash anywhere re-delivers only inputs whose offsets were not committed.
If the changelog already holds their effect, the transition ignores them
(results for a step no longer scheduled, a run that exists). If not, the
transition recomputes the same records with the same ids, and the ids found
at the tail of our own output partitions when we took the partition over are
not written again. The orchestrator of partition ``p`` is the only writer of
partition ``p`` of these topics, so that tail is complete.

Kafka transactions would be simpler, but the embedded broker does not filter
aborted records (notes/broker-facts.md), so they cannot be relied on.

Crash points (``DURABLE_CRASH_AT``, :mod:`streams.chaos`) sit between the
steps: ``orchestrator.before_outputs``, ``orchestrator.after_outputs``,
``orchestrator.after_timer_outputs`` (a batch that fired due retries),
``orchestrator.after_changelog``, ``orchestrator.before_commit``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from schemas import to_bytes
from schemas.models import ExpiredRun, RunState
from streams import chaos
from streams.fencing import Fence
from streams.runtable import Changes, RunTable
from streams.writer import Writer

# Headers on every record the orchestrator writes: which input caused it, and its id (what the guard checks).
SRC_HEADER = "src"
ID_HEADER = "id"


@dataclass(frozen=True)
class Write:
    """One outgoing record, with the input that caused it (``src``) and its stable id."""

    src: str
    message_id: str
    topic: str
    partition: int
    key: str | None
    value: bytes
    traceparent: str | None = None
    mac: tuple[str, bytes] | None = None  # the worker MAC header of a step command (streams.authentication)
    owner: int | None = None  # the partition whose owner writes it, when not ``partition`` (a forwarded input)

    @property
    def owned_by(self) -> int:
        return self.partition if self.owner is None else self.owner


@dataclass
class Checkpoint:
    """What one batch writes, gathered while its inputs are applied, then committed in order."""

    writes: list[Write] = field(default_factory=list)
    states: dict[tuple[int, str], RunState] = field(default_factory=dict)
    encoded: dict[tuple[int, str], bytes] = field(default_factory=dict)  # the states' bytes, encoded once
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    fired_timers: bool = False
    markers: dict[tuple[int, str], ExpiredRun] = field(default_factory=dict)  # runs expiring (streams.retention)
    forgotten: set[tuple[int, str]] = field(default_factory=set)  # expired runs whose markers go

    def consumed(self, topic: str, partition: int, offset: int) -> None:
        """An input was applied: its offset is committed with this checkpoint."""
        self.offsets[(topic, partition)] = offset + 1

    def partitions(self) -> set[int]:
        """The partitions whose ownership this checkpoint acts on."""
        return (
            {w.owned_by for w in self.writes}
            | {p for p, _ in [*self.states, *self.markers, *self.forgotten]}
            | {p for _, p in self.offsets}
        )

    def drop(self, partitions: set[int]) -> None:
        """Forget everything this checkpoint would write or commit for ``partitions`` (no longer ours)."""
        self.writes = [w for w in self.writes if w.owned_by not in partitions]
        self.states = {k: v for k, v in self.states.items() if k[0] not in partitions}
        self.encoded = {k: v for k, v in self.encoded.items() if k[0] not in partitions}
        self.offsets = {k: v for k, v in self.offsets.items() if k[1] not in partitions}
        self.markers = {k: v for k, v in self.markers.items() if k[0] not in partitions}
        self.forgotten = {k for k in self.forgotten if k[0] not in partitions}

    def commit(
        self,
        writer: Writer,
        changelog_topic: str,
        table: RunTable,
        consumer: Consumer,
        guard: Mapping[int, set[str]],
        fence: Fence | None = None,
    ) -> set[int]:
        """Make the batch durable: outputs, changelog, local state, offsets (see the module docstring).

        With a ``fence``, first drop what the batch holds for partitions another orchestrator has claimed
        since this one did (:mod:`streams.fencing`); returns those partitions.
        """
        if not (self.writes or self.states or self.offsets or self.markers or self.forgotten):
            return set()  # a poll that brought nothing to apply (end-of-partition events, admission waits)
        chaos.point("orchestrator.before_outputs")
        lost: set[int] = set()
        if fence is not None and (touched := self.partitions()):
            lost = fence.fenced(touched)
            self.drop(lost)
        self._write_outgoing(writer, guard)
        chaos.point("orchestrator.after_outputs")
        if self.fired_timers:
            chaos.point("orchestrator.after_timer_outputs")
        self._write_states(writer, changelog_topic, table)
        chaos.point("orchestrator.before_commit")
        if self.offsets:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in self.offsets.items()], asynchronous=True)
        return lost

    def _write_outgoing(self, writer: Writer, guard: Mapping[int, set[str]]) -> None:
        for w in self.writes:
            if w.message_id in guard.get(w.partition, ()):
                continue  # written before a crash, for an input we are now re-processing
            headers: list[tuple[str, str | bytes | None]] = [
                (SRC_HEADER, w.src.encode()),
                (ID_HEADER, w.message_id.encode()),
            ]
            if w.traceparent is not None:
                headers.append(("traceparent", w.traceparent.encode()))
            if w.mac is not None:
                headers.append(w.mac)
            writer.send(w.topic, w.value, key=w.key, partition=w.partition, headers=headers)
        writer.flush()

    def _write_states(self, writer: Writer, changelog_topic: str, table: RunTable) -> None:
        if not (self.states or self.markers or self.forgotten):
            return
        offsets: dict[int, int] = defaultdict(lambda: -1)

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                p = msg.partition() or 0
                offsets[p] = max(offsets[p], msg.offset() or 0)

        changes: dict[int, Changes] = defaultdict(Changes)
        for (p, run_id), state in self.states.items():
            value = self.encoded.get((p, run_id)) or to_bytes(state)  # one encoding for the changelog and RocksDB
            changes[p].state(state, value)
            writer.send(changelog_topic, value, key=run_id, partition=p, on_delivery=delivered)
        for (p, run_id), marker in self.markers.items():
            value = to_bytes(marker)
            changes[p].marker(marker, value)
            writer.send(changelog_topic, value, key=run_id, partition=p, on_delivery=delivered)
        for p, run_id in self.forgotten:
            changes[p].forget(run_id)
            writer.send(changelog_topic, None, key=run_id, partition=p, on_delivery=delivered)  # a tombstone
        writer.flush()
        chaos.point("orchestrator.after_changelog")
        for p, partition_changes in changes.items():
            table.apply(p, partition_changes, offsets[p] + 1)
