"""The orchestrator: owns runs by partition and advances them exactly once.

For each batch of input records (workflow inputs and step results) it:

1. applies the pure transition to each record, in partition order;
2. writes what the transitions asked for (commands, journal events, outputs,
   dead letters) to partition ``p`` of their topics, and waits for the acks;
3. writes the changed run states to the changelog and waits for the acks;
4. stores the states in local RocksDB, then commits the input offsets
   (asynchronously: a commit lost in a crash only redelivers inputs whose
   effect the changelog already holds, which the transition ignores).

Retries waiting out a backoff are timers in their run's state; the
orchestrator fires the due ones (:class:`streams.timers.TimerQueue`) as
events of the same kind of batch, so they get the same ordered writes. A
fired timer has no input offset: its records carry ``src=timer:...`` and are
always guarded on take-over, and its event time is its due time, so firing
it again after a crash recomputes the same records.

A crash anywhere re-delivers only inputs whose offsets were not committed.
If the changelog already holds their effect, the transition ignores them
(results for a step no longer scheduled, a run that exists). If not, the
transition recomputes the same records with the same ids, and the ids found
at the tail of our own output partitions when we took the partition over are
not written again. The orchestrator of partition ``p`` is the only writer of
partition ``p`` of these topics, so that tail is complete.

Kafka transactions would be simpler, but the embedded broker does not filter
aborted records (notes/broker-facts.md), so they cannot be relied on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from processors.engine.execute import run_step
from processors.engine.transition import (
    Event,
    Outgoing,
    RedriveRequested,
    RunRequested,
    StepFinished,
    TimerFired,
    timers,
    transition,
)
from processors.engine.workflow import Workflow
from processors.models import client_from_env
from schemas import DecodeError, decode, encode, from_bytes, to_bytes
from schemas.models import DeadLetter, JournalEvent, JournalKind, RunControl, RunState, StepCommand, StepResult
from streams import chaos, deadletters
from streams.config import Settings
from streams.kafka import LOW_LATENCY_SLICE_S, read_to_end, reader, take
from streams.kafka import consumer as make_consumer
from streams.kafka import producer as make_producer
from streams.state import RunTable, waits
from streams.telemetry import Telemetry, parent_of_run, traceparent_of
from streams.timers import TimerQueue
from streams.topics import Topics, ensure_topics, topic_id

log = logging.getLogger(__name__)

_ENDINGS = {
    JournalKind.RUN_COMPLETED: "COMPLETED",
    JournalKind.RUN_FAILED: "FAILED",
    JournalKind.RUN_COMPENSATED: "COMPENSATED",
}

SCAN_CHUNK = 2000
POLL_S = 0.1
TIMER_SRC = "timer:"


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge a write; the batch is not committed."""


@dataclass(frozen=True)
class _Write:
    """One record to write, with the input record that caused it."""

    src: str
    message_id: str
    topic: str
    partition: int
    key: str | None
    value: bytes
    traceparent: str | None = None


@dataclass
class _Batch:
    """What one batch writes, accumulated before the flushes."""

    states: dict[tuple[int, str], RunState] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    journal: list[JournalEvent] = field(default_factory=list)
    record_letters: int = 0
    local_results: list[tuple[StepResult, int]] = field(default_factory=list)


class Orchestrator:
    """Consumes workflow inputs and step results; writes commands, journal, outputs."""

    def __init__(
        self,
        settings: Settings,
        workflows: list[Workflow],
        stop: threading.Event,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.topics = Topics(settings.namespace)
        self.workflows = {wf.name: wf for wf in workflows}
        self.models = client_from_env()  # for steps declared local
        self.by_input = {self.topics.name(wf.input_topic): wf for wf in workflows}
        self.output_topic = {wf.name: self.topics.name(wf.output_topic) for wf in workflows}
        self.stop = stop
        self.owned: set[int] = set()
        self.guard: dict[int, set[str]] = {}
        self.timers = TimerQueue()
        self._loop = asyncio.new_event_loop()  # for steps declared local
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._table: RunTable | None = None
        self._slice = LOW_LATENCY_SLICE_S if settings.low_latency else None

    # -- topics ----------------------------------------------------------------

    @property
    def input_topics(self) -> list[str]:
        return [*self.by_input, self.topics.results, self.topics.control]

    @property
    def output_topics(self) -> list[str]:
        return [self.topics.commands, self.topics.journal, *sorted(set(self.output_topic.values()))]

    def all_topics(self) -> list[str]:
        return [*self.input_topics, *self.output_topics, self.topics.run_changelog, self.topics.dead_letters]

    # -- partition ownership --------------------------------------------------

    @property
    def assigned(self) -> bool:
        return bool(self.owned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._table is not None
        new = sorted({tp.partition for tp in partitions} - self.owned)
        if not new:
            return
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed([TopicPartition(t, p) for t in self.input_topics for p in new], timeout=30)
        }
        restored = self._table.restore(self.settings, new)
        guards = self._scan_written(new, committed)
        for p in new:
            self.guard[p] = guards[p]
            waiting = self._table.waiting(p)
            for state in waiting:
                self.timers.set_run(p, state.run_id, timers(state))
            log.info(
                "partition %d assigned: %d states restored, %d ids guarded, %d runs waiting to retry",
                p,
                restored[p],
                len(guards[p]),
                len(waiting),
            )
        self.owned |= set(new)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are committed before poll returns control, so nothing is half done here.
        for tp in partitions:
            self.owned.discard(tp.partition)
            self.guard.pop(tp.partition, None)
            self.timers.drop_partition(tp.partition)

    def _scan_written(self, partitions: list[int], committed: dict[tuple[str, int], int]) -> dict[int, set[str]]:
        """Per partition, the ids we wrote for inputs whose offsets are not committed.

        Reads each output partition backwards in chunks until it reaches a
        record caused by an input that is committed: everything before that
        was caused by committed inputs too, which will not come again. All
        partitions of all output topics are read together, chunk by chunk.
        """
        ids: dict[int, set[str]] = {p: set() for p in partitions}
        scan = reader(self.settings)
        try:
            bounds: dict[tuple[str, int], list[int]] = {}
            for topic in [*self.output_topics, self.topics.dead_letters]:
                for p in partitions:
                    low, high = scan.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    bounds[(topic, p)] = [low, high]
            pending = [key for key, (low, high) in bounds.items() if high > low]
            while pending:
                starts = []
                for topic, p in pending:
                    low, end = bounds[(topic, p)]
                    start = max(low, end - SCAN_CHUNK)
                    bounds[(topic, p)][1] = start
                    starts.append(TopicPartition(topic, p, start))
                reached: set[tuple[str, int]] = set()
                for msg in read_to_end(scan, starts):
                    src, mid = _header(msg, "src"), _header(msg, "id")
                    if src is None or mid is None:
                        continue
                    if src.startswith(TIMER_SRC):
                        ids[msg.partition() or 0].add(mid)  # no offset says it was finished: guard it
                        continue
                    src_topic, src_part, src_off = src.rsplit(":", 2)
                    if int(src_off) < committed.get((src_topic, int(src_part)), -1):
                        reached.add((msg.topic() or "", msg.partition() or 0))
                    else:
                        ids[msg.partition() or 0].add(mid)
                pending = [k for k in pending if k not in reached and bounds[k][1] > bounds[k][0]]
        finally:
            scan.close()
        return ids

    # -- main loop --------------------------------------------------------------

    def run(self) -> None:
        ensure_topics(self.settings, self.all_topics(), compacted=frozenset({self.topics.run_changelog}))
        state_path = self.settings.state_dir / self.settings.namespace / self.settings.worker_name
        self._table = RunTable(state_path, self.topics.run_changelog)
        if self._table.bind(topic_id(self.settings, self.topics.run_changelog)):
            log.warning("state in %s was built from another changelog: emptied, restoring from the log", state_path)
        self._producer = make_producer(self.settings)
        self._consumer = make_consumer(self.settings, self.topics.orchestrator_group)
        self._consumer.subscribe(
            self.input_topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not self.stop.is_set():
                msgs = take(self._consumer, self.settings.max_batch, self._poll_timeout(), self._slice)
                due = self.timers.pop_due(_now_ms())
                if msgs or due:
                    self._process(msgs, due)
        finally:
            self._consumer.close()
            self._producer.flush(10)
            self._producer = None  # destroy the client now, not when the broker may be gone
            self._table.close()
            self._loop.close()

    def _poll_timeout(self) -> float:
        """Wait for records no longer than until the next retry is due."""
        due = self.timers.next_due_ms()
        if due is None:
            return POLL_S
        return min(POLL_S, max(0.0, (due - _now_ms()) / 1000))

    def _process(self, msgs: list[Message], due: list[tuple[int, TimerFired]] | None = None) -> None:
        assert self._producer and self._consumer and self._table
        batch = _Batch()
        pending: list[_Write] = []
        for p, timer in due or []:
            state = self._table.get(p, timer.run_id)
            if p not in self.owned or state is None or state.workflow not in self.workflows:
                continue
            src = f"{TIMER_SRC}{timer.run_id}/{timer.step}/{timer.action}/{timer.attempt}"
            self._advance(batch, pending, src, p, self.workflows[state.workflow], timer.run_id, timer)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            topic, p, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            batch.offsets[(topic, p)] = offset + 1
            src = f"{topic}:{p}:{offset}"
            try:
                wf, run_id, event = self._decode(msg)
            except DecodeError as exc:
                letter = deadletters.from_message(msg, str(exc), type(exc).__name__)
                batch.record_letters += 1
                log.warning("dead-lettered %s: %s", src, exc)
                pending.append(_Write(src, letter.dead_letter_id, self.topics.dead_letters, p, None, to_bytes(letter)))
                continue
            self._advance(batch, pending, src, p, wf, run_id, event)

        chaos.point("orchestrator.before_outputs")
        self._write_outgoing(pending)
        chaos.point("orchestrator.after_outputs")
        if due:
            chaos.point("orchestrator.after_timer_outputs")
        self._write_states(batch)
        chaos.point("orchestrator.before_commit")
        if batch.offsets:
            # Asynchronous: the changelog already holds the batch's effect, so an input redelivered
            # because its commit was lost is ignored by the transition (and guarded on take-over).
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()], asynchronous=True
            )
        # Timers are armed only once their state is durable; likewise what telemetry reports.
        for (p, run_id), state in batch.states.items():
            self.timers.set_run(p, run_id, timers(state))
        self._report(batch)

    def _report(self, batch: _Batch) -> None:
        """Spans and metrics of a committed batch: local step attempts, retries, dead letters, ended runs."""
        if self.telemetry is None:
            return
        t = self.telemetry
        for result, generation in batch.local_results:
            wf = self.workflows[result.workflow]
            output = json.loads(result.output_json) if result.output_json else None
            t.step_span(result, wf.step(result.step).span_name, parent_of_run(result.run_id, generation), output)
        if batch.record_letters:
            t.dead_letters.add(batch.record_letters, {"kind": "record"})
        ended = {run_id: state for (_, run_id), state in batch.states.items()}
        for event in batch.journal:
            kind = event.kind
            if kind in (JournalKind.STEP_RETRY_WAITING, JournalKind.COMPENSATION_RETRY_WAITING):
                t.retries.add(1, {"workflow": event.workflow, "step": event.step or ""})
            elif kind in (JournalKind.STEP_DEAD_LETTERED, JournalKind.COMPENSATION_DEAD_LETTERED):
                t.dead_letters.add(1, {"kind": "step", "workflow": event.workflow, "step": event.step or ""})
            elif kind in _ENDINGS:
                state = ended.get(event.run_id)
                if state is not None:
                    t.run_span(
                        event.run_id, event.workflow, state.generation, _ENDINGS[kind], state.started_at_ms, event.at_ms
                    )

    def _decode(self, msg: Message) -> tuple[Workflow, str, Event]:
        topic = msg.topic() or ""
        value = msg.value()
        if value is None:
            raise DecodeError("empty record value")
        at_ms = msg.timestamp()[1]
        if topic == self.topics.results:
            result = from_bytes(value, StepResult)
            wf = self.workflows.get(result.workflow)
            if wf is None:
                raise DecodeError(f"result for unknown workflow {result.workflow!r}")
            return wf, result.run_id, StepFinished(result, at_ms)
        if topic == self.topics.control:
            control = from_bytes(value, RunControl)
            wf = self.workflows.get(control.workflow)
            if wf is None:
                raise DecodeError(f"control for unknown workflow {control.workflow!r}")
            return wf, control.run_id, RedriveRequested(control, at_ms)
        wf = self.by_input[topic]
        _, record = decode(value, expect=wf.input_schema)
        try:
            run_id = wf.run_id_of(record)
        except Exception as exc:
            raise DecodeError(f"cannot derive run id: {exc}") from exc
        return wf, run_id, RunRequested(run_id, record, at_ms)

    def _advance(
        self,
        batch: _Batch,
        pending: list[_Write],
        src: str,
        p: int,
        wf: Workflow,
        run_id: str,
        event: Event,
    ) -> None:
        assert self._table is not None
        queue: deque[Event] = deque([event])
        while queue:
            ev = queue.popleft()
            state = batch.states.get((p, run_id)) or self._table.get(p, run_id)
            tr = transition(wf, state, ev)
            if not tr.applied or tr.state is None:
                continue
            batch.states[(p, run_id)] = tr.state
            generation = tr.state.generation
            for out in tr.outgoing:
                if out.kind == "command" and isinstance(out.record, StepCommand) and wf.step(out.record.step).local:
                    # Short steps run here: their result is journaled like any other,
                    # and re-runs (at least once) if the batch is not committed.
                    result = self._loop.run_until_complete(
                        run_step(self.workflows, out.record, self.settings.worker_name, models=self.models)
                    )
                    batch.local_results.append((result, generation))
                    queue.append(StepFinished(result, result.finished_at_ms))
                    continue
                if isinstance(out.record, JournalEvent):
                    batch.journal.append(out.record)
                pending.append(self._to_write(wf, src, p, out, traceparent_of(run_id, generation)))

    def _to_write(self, wf: Workflow, src: str, p: int, out: Outgoing, traceparent: str) -> _Write:
        rec = out.record
        if isinstance(rec, StepCommand):
            return _Write(src, out.message_id, self.topics.commands, p, rec.run_id, to_bytes(rec), traceparent)
        if isinstance(rec, JournalEvent):
            return _Write(src, out.message_id, self.topics.journal, p, rec.run_id, to_bytes(rec))
        if isinstance(rec, DeadLetter):
            letter = rec.model_copy(update={"source_topic": self.topics.commands, "source_partition": p})
            return _Write(src, out.message_id, self.topics.dead_letters, p, rec.run_id, to_bytes(letter))
        value = encode(wf.output_schema, rec)
        key = str(rec.get("run_id", ""))
        return _Write(src, out.message_id, self.output_topic[wf.name], p, key, value, traceparent)

    def _write_outgoing(self, pending: list[_Write]) -> None:
        assert self._producer is not None
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for w in pending:
            if w.message_id in self.guard.get(w.partition, ()):
                continue  # written before a crash, for an input we are now re-processing
            headers: list[tuple[str, str | bytes | None]] = [("src", w.src.encode()), ("id", w.message_id.encode())]
            if w.traceparent is not None:
                headers.append(("traceparent", w.traceparent.encode()))
            self._produce(w.topic, w.partition, w.key, w.value, headers, delivered)
        self._producer.flush()
        if failures:
            raise DeliveryFailed(f"{len(failures)} writes failed, first: {failures[0]}")

    def _produce(
        self,
        topic: str,
        p: int,
        key: str | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, partition=p, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain

    def _write_states(self, batch: _Batch) -> None:
        assert self._producer is not None and self._table is not None
        if not batch.states:
            return
        offsets: dict[int, int] = defaultdict(lambda: -1)
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                p = msg.partition() or 0
                offsets[p] = max(offsets[p], msg.offset() or 0)

        encoded: dict[int, dict[str, bytes]] = defaultdict(dict)
        waiting: dict[int, set[str]] = defaultdict(set)
        for (p, run_id), state in batch.states.items():
            value = encoded[p][run_id] = to_bytes(state)
            if waits(state):
                waiting[p].add(run_id)
            self._produce(self.topics.run_changelog, p, run_id, value, [], delivered)
        self._producer.flush()
        if failures:
            raise DeliveryFailed(f"{len(failures)} changelog writes failed, first: {failures[0]}")
        chaos.point("orchestrator.after_changelog")
        for p, states in encoded.items():
            self._table.write(p, states, waiting[p], offsets[p] + 1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _header(msg: Message, name: str) -> str | None:
    for header in msg.headers() or []:
        key, value = header[0], header[1]
        if key == name and value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
