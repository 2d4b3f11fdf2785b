"""Step executors: stateless workers that run step commands and publish results.

Commands run concurrently (bounded). A command's offset is committed only
once its result is acknowledged and every earlier command of its partition is
done too, so a crash re-runs unfinished commands (at least once; the step's
idempotency key is ``run_id/step/attempt``) and the orchestrator ignores
duplicate results. A result goes to the same partition number as its command,
which is the partition of the orchestrator that owns the run.

Workers trust only workers (:mod:`streams.authentication`): a command runs
only if it carries the orchestrator's MAC (a forged one is dead-lettered:
its inputs could otherwise steer a real step, whose result this executor
would sign), and every result carries this executor's MAC, without which the
orchestrator applies none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.engine.execute import run_step
from processors.engine.versions import Versions, resolve
from processors.engine.workflow import Workflow
from processors.models import client_from_env
from schemas import DecodeError, from_bytes, to_bytes
from schemas.models import StepCommand, StepError, StepResult
from streams import authentication, chaos, deadletters
from streams.config import Settings
from streams.groupwatch import LEAVE_LIMIT_S, GroupWatch, leave
from streams.kafka import LOW_LATENCY_SLICE_S, take
from streams.kafka import consumer as make_consumer
from streams.telemetry import Telemetry, context_from_headers, headers_of
from streams.topics import Topics, ensure_topics
from streams.writer import Writer

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.2
RESULT_LINGER_MS = 2  # with Settings.low_latency
RESULT_LINGER_DEFAULT_MS = 20


class OffsetTracker:
    """Per partition: which offsets are in flight, and how far it is safe to commit."""

    def __init__(self) -> None:
        self._inflight: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}
        self._committed: dict[int, int] = {}

    def started(self, partition: int, offset: int) -> None:
        self._inflight.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: int, offset: int) -> None:
        if partition in self._inflight:
            self._inflight[partition].discard(offset)

    def forget(self, partition: int) -> None:
        self._inflight.pop(partition, None)
        self._next.pop(partition, None)
        self._committed.pop(partition, None)

    def committable(self) -> dict[int, int]:
        """Partitions whose safe commit point moved since the last call."""
        out: dict[int, int] = {}
        for partition, nxt in self._next.items():
            inflight = self._inflight.get(partition)
            point = min(inflight) if inflight else nxt
            if point > self._committed.get(partition, -1):
                out[partition] = point
                self._committed[partition] = point
        return out

    def in_flight(self) -> int:
        return sum(len(s) for s in self._inflight.values())


class Executor:
    """Consumes step commands, runs them, writes step results."""

    def __init__(
        self,
        settings: Settings,
        workflows: list[Workflow],
        stop: threading.Event,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.group_watch = GroupWatch(self.topics.executor_group, settings.group_stuck_s)
        self.workflows = Versions(workflows)
        self._held: set[str] = set()  # commands of a version this executor lacks, held unanswered
        self.models = client_from_env(simulations=[wf.simulation for wf in workflows])
        self.telemetry = telemetry
        self._partitions: set[int] = set()
        self.stop = stop
        self.tracker = OffsetTracker()
        self._consumer: Consumer | None = None
        self._writer: Writer | None = None
        self._secret = b""
        self._accepted: list[bytes] = []
        self.failure: BaseException | None = None

    @property
    def reads(self) -> list[str]:
        """The topics this executor's group consumer reads."""
        return [self.topics.commands]

    @property
    def assigned(self) -> bool:
        return bool(self._partitions)

    def _on_assign(self, _c: Consumer, partitions: list[TopicPartition]) -> None:
        self._partitions |= {tp.partition for tp in partitions}
        log.info("executor now runs commands from partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _c: Consumer, partitions: list[TopicPartition]) -> None:
        # Unfinished commands of a lost partition will be re-run by its new owner.
        for tp in partitions:
            self.tracker.forget(tp.partition)
            self._partitions.discard(tp.partition)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._secret = authentication.signing_secret()  # a worker that cannot sign must not start
        self._accepted = authentication.verifying_secrets()
        ensure_topics(self.settings, [self.topics.commands, self.topics.results, self.topics.dead_letters])
        self._consumer = make_consumer(
            self.settings, self.topics.executor_group, self.reads, **self.group_watch.consumer_config()
        )
        # Results linger to share batches (the embedded broker's reads slow down with the number of batches
        # in a partition, streams.wall): 2 ms when hops are fast, 20 ms when each hop waits ~250 ms anyway.
        linger = RESULT_LINGER_MS if self.settings.low_latency else RESULT_LINGER_DEFAULT_MS
        self._writer = Writer(self.settings, **{"linger.ms": linger})
        self._consumer.subscribe(
            [self.topics.commands], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        slots = asyncio.Semaphore(self.settings.executor_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        last_commit = time.monotonic()
        consumer, writer = self._consumer, self._writer
        slice_s = LOW_LATENCY_SLICE_S if self.settings.low_latency else None
        try:
            while not self.stop.is_set():
                msgs = await loop.run_in_executor(None, take, consumer, 200, 0.05, slice_s)
                for msg in msgs:
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consume error: %s", error)
                        continue
                    await slots.acquire()
                    self.tracker.started(msg.partition() or 0, msg.offset() or 0)
                    task = asyncio.create_task(self._handle(msg, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                writer.poll(0)
                if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                    self._commit()
                    last_commit = time.monotonic()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.poll(0)
            writer.close()  # flushes what was produced, so the commit below counts it
            self._commit()
            leave(consumer, self.group_watch, self.settings.heartbeat_interval_ms / 1000, LEAVE_LIMIT_S)
        if self.failure is not None:
            raise RuntimeError(f"a step result could not be written: {self.failure}") from self.failure

    def _commit(self) -> None:
        assert self._consumer is not None
        points = self.tracker.committable()
        if points:
            self._consumer.commit(
                offsets=[TopicPartition(self.topics.commands, p, o) for p, o in points.items()],
                asynchronous=True,
            )

    async def _handle(self, msg: Message, slots: asyncio.Semaphore) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            try:
                command = self._authentic(msg)
            except DecodeError as exc:
                letter = deadletters.from_message(msg, str(exc), type(exc).__name__)
                log.warning("dead-lettered command %s: %s", letter.dead_letter_id, exc)
                self._write(self.topics.dead_letters, partition, None, to_bytes(letter), offset)
                return
            if self._lacks_version(command):
                return  # not answered, not committed: it runs where (or when) its version is loaded
            chaos.point("executor.during_step")
            result = await run_step(self.workflows, command, self.settings.worker_name, models=self.models)
            headers = self._trace(msg, command, result)
            try:
                self._write_result(partition, offset, result, headers)
            except KafkaException as exc:
                # The result itself cannot be written (e.g. too large): the attempt fails, visibly.
                error = StepError(type="ResultNotWritable", message=str(exc), traceback="", retryable=False)
                failed = result.model_copy(update={"output_json": None, "error": error})
                self._write_result(partition, offset, failed, headers)
        finally:
            slots.release()

    def _lacks_version(self, command: StepCommand) -> bool:
        """Whether ``command`` is of a version of a loaded workflow that this executor has not loaded.

        Such a command is held: neither answered (a guess, or a failure, would end its run) nor committed,
        so its partition's committed offset stays before it and it is delivered again when the partition
        moves (a restart with the version loaded, or a rebalance). The commands after it on that partition
        run now, and again then (at least once, under the same idempotency keys).
        """
        if command.workflow not in self.workflows or resolve(
            self.workflows, command.workflow, command.workflow_version
        ):
            return False
        if command.command_id not in self._held:
            self._held.add(command.command_id)
            log.warning(
                "command %s waits: workflow %s version %s is not loaded by this executor (loaded: %s)",
                command.command_id,
                command.workflow,
                command.workflow_version,
                ", ".join(self.workflows.loaded(command.workflow)),
            )
            if self.telemetry is not None:
                self.telemetry.blocked.add(1, {"role": "executor", "workflow": command.workflow})
        return True

    def _authentic(self, msg: Message) -> StepCommand:
        """The command ``msg`` holds, if a worker wrote it; else :class:`DecodeError` saying why."""
        value = msg.value() or b""
        command = from_bytes(value, StepCommand)
        try:
            authentication.verify(self.topics.commands, command.command_id, value, msg.headers(), self._accepted)
        except authentication.Unauthenticated as exc:
            raise DecodeError(f"unauthenticated {command.command_id[:80]!r}: {exc}") from None
        return command

    def _write_result(
        self, partition: int, src_offset: int, result: StepResult, headers: list[tuple[str, str | bytes | None]]
    ) -> None:
        """Write ``result`` with its MAC (over its bytes and command id), which the orchestrator checks."""
        value = to_bytes(result)
        signed = authentication.header(self.topics.results, result.command_id, value, self._secret)
        self._write(self.topics.results, partition, result.run_id, value, src_offset, [*headers, signed])

    def _trace(self, msg: Message, command: StepCommand, result: StepResult) -> list[tuple[str, str | bytes | None]]:
        """The attempt's span, under the run span named by the command's traceparent; its header for the result."""
        if self.telemetry is None:
            return []
        wf = resolve(self.workflows, command.workflow, command.workflow_version)
        spec = wf.step(command.step) if wf is not None and wf.has_step(command.step) else None
        output = json.loads(result.output_json) if result.output_json else None
        evaluation = spec.evaluation(output) if spec is not None and spec.evaluation and output is not None else None
        name = spec.span_name if spec is not None else command.step
        span = self.telemetry.step_span(result, name, context_from_headers(msg.headers()), evaluation)
        return headers_of(span)

    def _write(
        self,
        topic: str,
        partition: int,
        key: str | None,
        value: bytes,
        src_offset: int,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        assert self._writer is not None

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.tracker.done(partition, src_offset)
            else:
                # The command's offset stays uncommitted; stop so a restart runs it again.
                self.failure = KafkaException(err)
                self.stop.set()

        self._writer.send(topic, value, key=key, partition=partition, headers=headers, on_delivery=delivered)
