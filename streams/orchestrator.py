"""The orchestrator: owns runs by partition and advances them exactly once.

Its loop takes a batch of input records (workflow inputs, step results,
redrive requests: :mod:`streams.events`) and the retries that fell due
(:mod:`streams.timers`), applies the pure transition to each in partition
order, runs the steps declared local (:mod:`streams.local_steps`), and
commits the batch's writes in the order that makes a crash harmless
(:mod:`streams.checkpoint`: outputs, changelog, RocksDB, offsets). When it is
given partitions it takes them over first (:mod:`streams.recovery`).

Every ``sweep_every_s`` it also expires the finished runs past their retention
and forgets the expired ones past their marker period, in a checkpoint of
its own (:mod:`streams.retention`).

Retries waiting out a backoff are timers in their run's state; a fired timer
has no input offset: its records carry ``src=timer:...`` and are always
guarded on take-over, and its event time is its due time, so firing it again
after a crash recomputes the same records.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Collection

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from processors.engine.transition import (
    Event,
    Outgoing,
    RecordRejected,
    RunRequested,
    StepFinished,
    TimerFired,
    timers,
    transition,
)
from processors.engine.versions import Versions
from processors.engine.workflow import Workflow
from processors.models import client_from_env
from schemas import DecodeError, encode, to_bytes
from schemas.models import DeadLetter, JournalEvent, RunState, StepCommand, StepResult
from streams import authentication, blocked, deadletters, retention, signed_outputs, signing
from streams.admission import Admission
from streams.batchreport import BatchReport
from streams.batchsizes import BatchSizes
from streams.checkpoint import Checkpoint, Write
from streams.config import Settings
from streams.events import Inputs
from streams.fencing import Fence
from streams.groupwatch import LEAVE_LIMIT_S, GroupWatch, leave
from streams.kafka import LOW_LATENCY_SLICE_S, take
from streams.kafka import consumer as make_consumer
from streams.local_steps import LocalSteps
from streams.recovery import TIMER_SRC, take_over
from streams.runtable import RunTable, is_live
from streams.telemetry import Telemetry, traceparent_of
from streams.timers import TimerQueue
from streams.topics import Topics, ensure_topics, topic_id
from streams.writer import Writer

log = logging.getLogger(__name__)

POLL_S = 0.1


class RecordTooLarge(ValueError):
    """A transition would write a record larger than the broker takes (``Settings.max_record_bytes``)."""


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
        self.group_watch = GroupWatch(self.topics.orchestrator_group, settings.group_stuck_s)
        # Every loaded version, by name; as a mapping, each name's newest (new runs start on it).
        self.workflows = Versions(workflows)
        self.gate = blocked.VersionGate(self.workflows, settings.worker_name, telemetry)
        self.inputs = Inputs(self.topics, self.workflows, settings.partitions)
        self._secret = authentication.signing_secret()  # signs the step commands it writes
        # Signs every output it writes (streams.signed_outputs); None only with DURABLE_SIGNING=off.
        self._signer = signing.signer_from_env()
        if self._signer is None:
            log.warning("%s=off: this worker writes unsigned outputs", signing.SIGNING_ENV)
        else:
            for wf in workflows:
                signed_outputs.require_signable(wf.output_schema)
        self.output_topic = {wf.name: self.topics.name(wf.output_topic) for wf in workflows}
        self.local = LocalSteps(
            self.workflows, settings.worker_name, client_from_env(simulations=[wf.simulation for wf in workflows])
        )
        self.stop = stop
        self.owned: set[int] = set()
        self.guard: dict[int, set[str]] = {}
        self._fence: Fence | None = None
        self._fenced: set[int] = set()  # partitions found claimed by another orchestrator, until reassigned
        self.batch_sizes = BatchSizes()  # records per poll, logged at stop (streams.batchsizes)
        self.admission = Admission(settings.max_runs_in_flight)
        # After a take-over, run inputs are re-applied before run controls, and both before step results.
        self.admission.ranks = {
            **dict.fromkeys(self.inputs.by_topic, 0),
            self.topics.control: 1,
            self.topics.results: 2,
        }
        self.timers = TimerQueue()
        self._consumer: Consumer | None = None
        self._writer: Writer | None = None
        self._table: RunTable | None = None
        self._slice = LOW_LATENCY_SLICE_S if settings.low_latency else None
        self._next_sweep = time.monotonic()

    # -- topics ----------------------------------------------------------------

    @property
    def input_topics(self) -> list[str]:
        return self.inputs.names

    @property
    def reads(self) -> list[str]:
        """The topics this orchestrator's group consumer reads: its inputs, step results and controls."""
        return self.input_topics

    @property
    def output_topics(self) -> list[str]:
        return [self.topics.commands, self.topics.journal, *sorted(set(self.output_topic.values()))]

    def all_topics(self) -> list[str]:
        return [
            *self.input_topics,
            *self.output_topics,
            self.topics.run_changelog,
            self.topics.dead_letters,
            self.topics.owners,
        ]

    # -- partition ownership --------------------------------------------------

    @property
    def assigned(self) -> bool:
        return bool(self.owned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._table is not None
        new = sorted({tp.partition for tp in partitions} - self.owned)
        if not new or self.stop.is_set():
            return  # nothing new; or leaving (streams.groupwatch.leave): someone else will take them over
        # Claimed before the take-over scan: a zombie's later write is fenced, an earlier one is in the scan.
        assert self._fence is not None
        self._fence.claim(new)
        self._fenced -= set(new)
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed([TopicPartition(t, p) for t in self.input_topics for p in new], timeout=30)
        }
        found = take_over(self.settings, self._table, [*self.output_topics, self.topics.dead_letters], new, committed)
        for p, taken in found.items():
            self.guard[p] = taken.guard
            self.admission.take_over(p, self._table.live(p))
            self.admission.replay(p, taken.replay_to)
            for state in taken.waiting:
                if not state.blocked:
                    self.timers.set_run(p, state.run_id, timers(state))
            self.gate.taken_over(self._table, p)
            log.info(
                "partition %d assigned: %d states restored, %d ids guarded, %d runs waiting to retry",
                p,
                taken.restored,
                len(taken.guard),
                len(taken.waiting),
            )
        self.owned |= set(new)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are committed before poll returns control, so nothing is half done here.
        self._give_up({tp.partition for tp in partitions}, {tp.topic for tp in partitions})

    def _give_up(self, partitions: set[int], topics: Collection[str]) -> None:
        for p in partitions:
            self.owned.discard(p)
            self.guard.pop(p, None)
            for topic in topics:
                self.admission.drop(topic, p)
            self.timers.drop_partition(p)
        if self._fence is not None:
            self._fence.release(partitions)

    # -- main loop --------------------------------------------------------------

    def run(self) -> None:
        ensure_topics(self.settings, self.all_topics(), compacted=frozenset({self.topics.run_changelog}))
        state_path = self.settings.state_dir / self.settings.namespace / self.settings.worker_name
        self._table = RunTable(state_path, self.topics.run_changelog)
        if self._table.bind(topic_id(self.settings, self.topics.run_changelog)):
            log.warning("state in %s was built from another changelog: emptied, restoring from the log", state_path)
        self._writer = Writer(self.settings)
        self._fence = Fence(self.settings, self._writer)
        self._consumer = make_consumer(
            self.settings, self.topics.orchestrator_group, self.reads, **self.group_watch.consumer_config()
        )
        self._consumer.subscribe(
            self.input_topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not self.stop.is_set():
                msgs = take(self._consumer, self.settings.max_batch, self._poll_timeout(), self._slice)
                if msgs:
                    self._count_batch(len(msgs))
                due = self.timers.pop_due(_now_ms())
                if msgs or due or self.admission.waiting() or self.gate.recheck:
                    self._process(msgs, due)
                if retention.expires(self.settings) and time.monotonic() >= self._next_sweep:
                    self._sweep()
        finally:
            log.info("%s", self.batch_sizes.log_line())  # what bench/steps.py reads (streams.batchsizes)
            leave(self._consumer, self.group_watch, self.settings.heartbeat_interval_ms / 1000, LEAVE_LIMIT_S)
            self._writer.close()
            self._table.close()
            self.local.close()

    def _count_batch(self, size: int) -> None:
        self.batch_sizes.add(size)
        if self.telemetry is not None:
            self.telemetry.batch_size.record(size)

    def _sweep(self) -> None:
        """Expire finished runs past retention, forget expired ones past their marker period (streams.retention)."""
        assert self._writer and self._consumer and self._table
        checkpoint, full = retention.sweep(self.settings, self._table, set(self.owned), _now_ms())
        lost = checkpoint.commit(
            self._writer, self.topics.run_changelog, self._table, self._consumer, self.guard, self._fence
        )
        if lost:
            self._fenced_out(lost, 0)
        if checkpoint.markers or checkpoint.forgotten:
            log.info("retention: %d runs expired, %d forgotten", len(checkpoint.markers), len(checkpoint.forgotten))
        # A backlog (retention just shortened, or a long stop) is worked off batch by batch between inputs.
        self._next_sweep = time.monotonic() + (0.0 if full else retention.sweep_every_s(self.settings))

    def _poll_timeout(self) -> float:
        """Wait for records no longer than until the next retry is due."""
        due = self.timers.next_due_ms()
        if due is None:
            return POLL_S
        return min(POLL_S, max(0.0, (due - _now_ms()) / 1000))

    def _process(self, msgs: list[Message], due: list[tuple[int, TimerFired]] | None = None) -> None:
        assert self._writer and self._consumer and self._table
        checkpoint = Checkpoint(fired_timers=bool(due))
        report = BatchReport()
        self.gate.block_or_resume(
            checkpoint,
            self._table,
            self.owned,
            lambda c, src, p, wf, run_id, ev: self._advance(c, report, src, p, wf, run_id, ev),
            self.guard,
        )
        for p, timer in due or []:
            state = self._table.get(p, timer.run_id)
            if p not in self.owned or state is None or state.workflow not in self.workflows:
                continue
            src = f"{TIMER_SRC}{timer.run_id}/{timer.step}/{timer.action}/{timer.attempt}"
            self._advance(checkpoint, report, src, p, self.workflows[state.workflow], timer.run_id, timer)
        admitted_at = _now_ms()
        for msg in self.admission.batch(msgs):  # inputs held for room first, in order (streams/admission.py)
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            topic, p, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            if p in self._fenced or self.admission.behind_held(msg):
                continue  # another orchestrator owns it now; or it waits behind inputs held for admission
            if self.admission.blocked(msg):
                self.admission.hold(msg)  # a result before its run is re-applied after a take-over: it waits
                continue
            src = f"{topic}:{p}:{offset}"
            try:
                inbound = self.inputs.decode(msg)
            except DecodeError as exc:
                checkpoint.consumed(topic, p, offset)
                self.admission.applied(msg)
                self._dead_letter(checkpoint, report, msg, str(exc), type(exc).__name__)
                continue
            event = inbound.event
            if inbound.forward_to is None and isinstance(event, RunRequested):
                if self._expired(checkpoint, report, msg, p, event):
                    checkpoint.consumed(topic, p, offset)
                    self.admission.applied(msg)
                    continue
                if self._is_new(checkpoint, p, inbound.run_id) and not self.admission.was_admitted(msg):
                    was_held = self.admission.admit(msg)
                    if was_held is None:
                        continue  # no room: held, with the rest of its partition
                    if was_held:
                        # Held back by admission: the run starts (and its latency budget runs) now; the wait is traced.
                        event = dataclasses.replace(event, admitted_at_ms=admitted_at)
            checkpoint.consumed(topic, p, offset)
            self.admission.applied(msg)
            if inbound.forward_to is not None:
                # Written by a producer that partitioned by another rule: its run's owner gets it, once.
                checkpoint.writes.append(
                    Write(src, f"forward:{src}", topic, inbound.forward_to, inbound.run_id, msg.value() or b"", owner=p)
                )
                continue
            if inbound.rejected is not None:
                self._dead_letter(checkpoint, report, msg, inbound.rejected, "MalformedResult", inbound.run_id)
            self._advance(checkpoint, report, src, p, inbound.workflow, inbound.run_id, event, msg)

        writes = Counter(w.owned_by for w in checkpoint.writes)
        lost = checkpoint.commit(
            self._writer, self.topics.run_changelog, self._table, self._consumer, self.guard, self._fence
        )
        if lost:
            self._fenced_out(lost, sum(writes[p] for p in lost))
        # Timers are armed only once their state is durable; likewise what telemetry reports.
        for (p, run_id), state in checkpoint.states.items():
            self.timers.set_run(p, run_id, [] if state.blocked else timers(state))
            self.admission.settled(p, run_id, is_live(state))
        if self.admission.pause_or_resume(self._consumer):
            log.info("admission: %d runs in flight, new runs wait", self.admission.in_flight)
        if self.telemetry is not None:
            report.send(self.telemetry, checkpoint.states)

    def _fenced_out(self, lost: set[int], dropped: int) -> None:
        """Another orchestrator claimed ``lost`` while this one was stopped or cut off: let them go."""
        log.error(
            "fenced: partitions %s were taken over by another orchestrator while this one was stopped or cut off;"
            " dropped this batch's %d write(s) for them, and the partitions, until the group gives them back",
            sorted(lost),
            dropped,
        )
        self._fenced |= lost
        self._give_up(lost, self.input_topics)

    def _is_new(self, checkpoint: Checkpoint, p: int, run_id: str) -> bool:
        assert self._table is not None
        return (p, run_id) not in checkpoint.states and self._table.get(p, run_id) is None

    def _expired(self, checkpoint: Checkpoint, report: BatchReport, msg: Message, p: int, event: RunRequested) -> bool:
        """Whether ``event`` re-submits an expired run (streams.retention): if so, it never starts a second run.

        The same input is a duplicate, ignored like one for a retained run; a different one is dead-lettered.
        """
        assert self._table is not None
        marker = None if (p, event.run_id) in checkpoint.states else self._table.expired(p, event.run_id)
        if marker is None:
            return False
        if retention.resubmission(marker, event.input) == "duplicate":
            log.info("%s; its re-submission is a duplicate, ignored", retention.describe(marker))
        else:
            reason = f"{retention.describe(marker)}; this input differs from the one it ran with, so it is not started"
            self._dead_letter(checkpoint, report, msg, reason, "ExpiredRunConflict", event.run_id)
        return True

    def _dead_letter(
        self,
        checkpoint: Checkpoint,
        report: BatchReport,
        msg: Message,
        reason: str,
        error_type: str,
        run_id: str | None = None,
    ) -> str:
        """Dead-letter an input record (with the reason and where it came from); returns the letter's id."""
        letter = deadletters.from_message(msg, reason, error_type, run_id=run_id)
        report.record_letters += 1
        src = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
        log.warning("dead-lettered %s: %s", src, reason)
        checkpoint.writes.append(
            Write(src, letter.dead_letter_id, self.topics.dead_letters, msg.partition() or 0, None, to_bytes(letter))
        )
        return letter.dead_letter_id

    def _advance(
        self,
        checkpoint: Checkpoint,
        report: BatchReport,
        src: str,
        p: int,
        wf: Workflow,
        run_id: str,
        event: Event,
        msg: Message | None = None,
    ) -> None:
        """Apply ``event`` (and the results of local steps it schedules) to run ``run_id``.

        Nothing a record carries may stop the partition: a transition that raises, or whose records would be
        larger than the broker takes, is not applied; the record is dead-lettered and its run fails visibly.
        """
        assert self._table is not None
        queue: deque[Event] = deque([event])
        while queue:
            ev = queue.popleft()
            state = checkpoint.states.get((p, run_id)) or self._table.get(p, run_id)
            if state is not None:
                runs_on = self.gate.runs_on(state)
                if runs_on is None and is_live(state):  # its version is not loaded here: it waits, nothing guessed
                    self.gate.park(checkpoint, p, state, ev, self.guard.get(p, ()))
                    return
                if runs_on is None:  # a stopped run: nothing to wait for but a redrive, which must be asked again
                    log.warning(
                        "run %s (%s version %s, %s): %s ignored, its version is not loaded here",
                        run_id,
                        state.workflow,
                        state.version,
                        state.status.value,
                        type(ev).__name__,
                    )
                    return
                wf = runs_on
            try:
                applied = self._apply(checkpoint, report, src, p, wf, run_id, state, ev)
            except Exception as exc:  # a bad record, or a workflow that cannot handle it: never the partition's end
                log.exception("run %s: %s could not be applied", run_id, type(ev).__name__)
                self._reject(checkpoint, report, src, p, wf, run_id, state, ev, exc, msg)
                return
            queue.extend(applied)

    def _apply(
        self,
        checkpoint: Checkpoint,
        report: BatchReport,
        src: str,
        p: int,
        wf: Workflow,
        run_id: str,
        state: RunState | None,
        ev: Event,
    ) -> list[Event]:
        """One transition into the checkpoint (all or nothing); returns the results of the local steps it ran."""
        tr = transition(wf, state, ev)
        if not tr.applied or tr.state is None:
            return []
        generation = tr.state.generation
        writes: list[Write] = []
        journal: list[JournalEvent] = []
        local: list[StepResult] = []
        for out in tr.outgoing:
            if isinstance(out.record, StepCommand) and self.local.is_local(wf, out.record):
                # Its result is journaled like any other, and re-runs (at least once) if the batch is lost.
                local.append(self.local.run(out.record))
                continue
            if isinstance(out.record, JournalEvent):
                journal.append(out.record)
            writes.append(self._to_write(wf, src, p, out, traceparent_of(run_id, generation)))
        encoded = to_bytes(tr.state)
        limit = self.settings.max_record_bytes
        too_big = [(w.topic, len(w.value)) for w in writes if len(w.value) > limit]
        if len(encoded) > limit:
            too_big.append((self.topics.run_changelog, len(encoded)))
        if too_big:
            topic, size = too_big[0]
            raise RecordTooLarge(f"a record for {topic} would be {size:,} bytes, over the limit of {limit:,}")
        checkpoint.writes.extend(writes)
        checkpoint.states[(p, run_id)] = tr.state
        checkpoint.encoded[(p, run_id)] = encoded
        report.journal.extend(journal)
        report.local_results.extend((r, generation, wf) for r in local)
        return [StepFinished(r, r.finished_at_ms) for r in local]

    def _reject(
        self,
        checkpoint: Checkpoint,
        report: BatchReport,
        src: str,
        p: int,
        wf: Workflow,
        run_id: str,
        state: RunState | None,
        ev: Event,
        exc: Exception,
        msg: Message | None,
    ) -> None:
        """Dead-letter what could not be applied and fail its run (if it has one), compensating what it did."""
        reason = f"{type(ev).__name__} of run {run_id} could not be applied: {type(exc).__name__}: {exc}"[:2000]
        if msg is not None:
            letter_id = self._dead_letter(checkpoint, report, msg, reason, type(exc).__name__, run_id)
        else:
            letter = deadletters.for_event(run_id, src, reason, type(exc).__name__, wf.name)
            checkpoint.writes.append(
                Write(src, letter.dead_letter_id, self.topics.dead_letters, p, run_id, to_bytes(letter))
            )
            report.record_letters += 1
            letter_id = letter.dead_letter_id
        if state is None:
            return
        step, attempt = (ev.result.step, ev.result.attempt) if isinstance(ev, StepFinished) else (None, None)
        rejected = RecordRejected(run_id, reason, type(exc).__name__, letter_id, ev.at_ms, step, attempt)
        try:
            self._apply(checkpoint, report, src, p, wf, run_id, state, rejected)
        except Exception:
            # Even failing the run cannot be written: the dead letter says why, and the run stays as it was.
            log.exception("run %s could not be failed after a rejected record; see dead letter %s", run_id, letter_id)

    def _to_write(self, wf: Workflow, src: str, p: int, out: Outgoing, traceparent: str) -> Write:
        rec = out.record
        if isinstance(rec, StepCommand):
            # Signed: executors run only commands a worker wrote (else a forged command's inputs would steer
            # a real step, and the executor would sign its result).
            value = to_bytes(rec)
            mac = authentication.header(self.topics.commands, rec.command_id, value, self._secret)
            return Write(src, out.message_id, self.topics.commands, p, rec.run_id, value, traceparent, mac)
        if isinstance(rec, JournalEvent):
            return Write(src, out.message_id, self.topics.journal, p, rec.run_id, to_bytes(rec))
        if isinstance(rec, DeadLetter):
            letter = rec.model_copy(update={"source_topic": self.topics.commands, "source_partition": p})
            return Write(src, out.message_id, self.topics.dead_letters, p, rec.run_id, to_bytes(letter))
        if self._signer is not None:
            value = signed_outputs.sign(wf.output_schema, rec, out.chain_head, self._signer)
        else:
            value = encode(wf.output_schema, rec)
        key = str(rec.get("run_id", ""))
        return Write(src, out.message_id, self.output_topic[wf.name], p, key, value, traceparent)


def _now_ms() -> int:
    return int(time.time() * 1000)
