"""The webhook sink's Faust app: POST each decision, retry what failed, dead-letter what never succeeded.

Per record, in partition order: a decision is POSTed as JSON with
``Idempotency-Key: <decision_id>`` and a ``Durable-Signature`` (:mod:`.signing`);
timeouts, connection errors, 5xx and 429 are retried with exponential backoff
(a 429's ``Retry-After`` honoured, capped); another 4xx is final. A decision
that exhausts its attempts becomes a dead letter of kind ``delivery``.

Each delivery's state (:class:`~.delivery.DeliveryState`: attempts, next due
time, delivered or dead) lives in the Faust table ``deliveries`` on RocksDB
(rocksdict), with its changelog topic, written after every attempt. A record
is acknowledged to Faust once delivered or dead-lettered, so a SIGKILLed sink
re-reads its uncommitted tail; the table, recovered from the changelog, then
says which of those were already delivered (skipped, not re-sent) and where
each pending one stood (its attempts so far, its due time: resumed, not
restarted). What is re-sent is only a delivery acknowledged by the endpoint
whose ``delivered`` state was not yet written when the sink died (same
idempotency key).

A run's decisions are delivered one after the other, in order; different
runs' deliveries run concurrently (up to ``DeliveryPolicy.concurrency``), so
one run's failing endpoint calls hold back no other run. Records are still
acknowledged in offset order per partition (:class:`InOrderAcks`): Faust
derives the offset it commits from the acknowledged ones and, for a group
with no commit yet, does not stop at a gap, so acknowledging a later record
first could commit past an undelivered one.

Redrive: ``durable dlq redrive`` writes a signed request for a ``delivery``
letter to ``<ns>.sink.webhook.redrives`` (:mod:`.redrive`), on the partition
the decision was read from. This app consumes it: the delivery, if that
letter is its current one, gets a fresh budget and is queued behind the run's
other deliveries; a request for anything else changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
import httpx
from mode.types.signals import BaseSignalT

from connectors.sinks.decisions import BadRecord, Decision, Source, dead_letter, read, sink_keyring
from connectors.sinks.faust_app import sink_app
from connectors.sinks.health import SinkMetrics
from connectors.sinks.webhook import delivery as d
from connectors.sinks.webhook.delivery import DeliveryPolicy, DeliveryState
from connectors.sinks.webhook.pruning import Pruning
from connectors.sinks.webhook.redrive import SINK, TABLE, redrive_topic
from schemas import DecodeError, from_bytes, to_bytes
from schemas.models import DeadLetter, RunControl
from streams import authentication
from streams.config import Settings
from streams.topics import Topics

__all__ = ["SINK", "DeliveryPolicy", "InOrderAcks", "WebhookSink"]

log = logging.getLogger("durable.sink.webhook")


@dataclass
class _Slot:
    event: Any
    done: bool = False


def _forget(last_of_run: dict[str, asyncio.Task[None]], run: str, task: asyncio.Task[None]) -> None:
    """Drop a finished delivery from the run index unless a later one of the run took its place."""
    if last_of_run.get(run) is task:
        del last_of_run[run]


class InOrderAcks:
    """Acknowledges each partition's records in offset order, whatever order their deliveries finish in."""

    def __init__(self, ack: Callable[[Any], Awaitable[bool]]) -> None:
        self._ack = ack
        self._pending: dict[Any, deque[_Slot]] = defaultdict(deque)

    def add(self, event: Any) -> _Slot:
        slot = _Slot(event)
        self._pending[event.message.tp].append(slot)
        return slot

    async def done(self, slot: _Slot) -> None:
        slot.done = True
        queue = self._pending[slot.event.message.tp]
        while queue and queue[0].done:
            await self._ack(queue.popleft().event)


class WebhookSink:
    """The sink's app, its delivery table, its HTTP client settings and what it counted."""

    def __init__(
        self, settings: Settings, url: str, secret: bytes, policy: DeliveryPolicy, web_port: int | None = None
    ) -> None:
        self.settings, self.url, self.secret, self.policy = settings, url, secret, policy
        self.keyring = sink_keyring()  # decisions whose signature fails become dead letters, never deliveries
        self.app = sink_app(settings, SINK, web_port, store="rocksdb://")
        self.counts: Counter[str] = Counter()
        self.metrics = SinkMetrics(settings, SINK)
        topics = Topics(settings.namespace)
        decisions = self._raw_topic(topics.name("decisions"))
        self.redrives = self._raw_topic(redrive_topic(settings.namespace))
        self.dead_letters = self._raw_topic(topics.dead_letters)
        # Keyed by decision id; each entry lives on the partition of the record it came from (Faust tables are
        # co-partitioned with the stream that writes them), so the worker that owns a run's partition owns its state.
        self.table = self.app.Table(
            TABLE,
            default=None,
            partitions=settings.partitions,
            key_type=str,
            help="webhook deliveries by decision id: attempts, next due time, delivered or dead",
        )
        self.pruning = Pruning(self.table, policy.delivered_retention_s)
        decisions_name = topics.name("decisions")

        async def revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
            tps = args[0] if args else kwargs.get("revoked", ())  # Faust sends the revoked partitions positionally
            self.pruning.forget({tp.partition for tp in tps if tp.topic == decisions_name})

        self.app.on_partitions_revoked.connect(revoked)
        self.in_flight = asyncio.Semaphore(policy.concurrency)
        self.last_of_run: dict[str, asyncio.Task[None]] = {}
        self.app.agent(decisions, name=f"{settings.namespace}.sink.webhook.decisions")(self._consume)
        self.app.agent(self.redrives, name=f"{settings.namespace}.sink.webhook.redrives")(self._consume_redrives)

    def _raw_topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, key_serializer="raw", value_serializer="raw")

    # ------------------------------------------------------------------ the two streams

    async def _consume(self, stream: faust.StreamT[Any]) -> None:
        manual = cast(faust.Stream[Any], stream).noack()  # acknowledged by hand, once delivered or dead-lettered
        acks = InOrderAcks(manual.ack)
        async with httpx.AsyncClient(timeout=self.policy.timeout_s) as client:
            async for event in manual.events():
                message = event.message
                source = Source(message.topic, message.partition, message.offset)
                # While this partition's event is current: Faust writes table changes to the event's partition.
                if forgotten := self.pruning.prune(message.partition):
                    self._count("forgotten", forgotten)
                item = read(message.value, source, self.keyring)
                if isinstance(item, BadRecord):
                    job: Callable[[], Awaitable[None]] = partial(self._send_letter, dead_letter(item, SINK))
                    run = f"record:{source}"
                else:
                    job = partial(self._deliver_new, client, item, message.value)
                    run = item.decision.run_id
                await self._schedule(run, job, acks.add(event), acks)

    async def _consume_redrives(self, stream: faust.StreamT[Any]) -> None:
        manual = cast(faust.Stream[Any], stream).noack()  # acknowledged once the redriven delivery is done
        acks = InOrderAcks(manual.ack)
        async with httpx.AsyncClient(timeout=self.policy.timeout_s) as client:
            async for event in manual.events():
                message = event.message
                source = Source(message.topic, message.partition, message.offset)
                request = self._redrive_request(message.value, message.headers, source)
                slot = acks.add(event)
                if isinstance(request, BadRecord):
                    await self._schedule(
                        f"record:{source}", partial(self._send_letter, dead_letter(request, SINK)), slot, acks
                    )
                else:
                    await self._schedule(request.run_id, partial(self._redeliver, client, request), slot, acks)

    async def _schedule(self, run: str, job: Callable[[], Awaitable[None]], slot: _Slot, acks: InOrderAcks) -> None:
        """Run ``job`` after the run's previous one (concurrently with other runs'), then acknowledge in order.

        The task is created here, inside the stream's iteration, so it carries the record's Faust event in its
        context: the table writes it makes go to that record's partition.
        """
        await self.in_flight.acquire()
        task = asyncio.ensure_future(self._in_turn(self.last_of_run.get(run), job, slot, acks))
        self.last_of_run[run] = task
        task.add_done_callback(partial(_forget, self.last_of_run, run))

    async def _in_turn(
        self, before: asyncio.Task[None] | None, job: Callable[[], Awaitable[None]], slot: _Slot, acks: InOrderAcks
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])  # its outcome is its own; only its turn matters here
            await job()
            await acks.done(slot)
        except Exception:  # unacknowledged, so redelivered after a restart: logged, never lost
            msg = slot.event.message
            log.exception("record at %s:%d:%d not delivered nor dead-lettered", msg.topic, msg.partition, msg.offset)
        finally:
            self.in_flight.release()

    # ------------------------------------------------------------------ deliveries

    def _state(self, decision_id: str) -> DeliveryState | None:
        raw = self.table.get(decision_id)
        return DeliveryState.from_json(raw) if isinstance(raw, dict) else None

    def _save(self, decision_id: str, state: DeliveryState) -> None:
        self.table[decision_id] = state.to_json()  # RocksDB now, the changelog topic (buffered) with it

    async def _deliver_new(self, client: httpx.AsyncClient, item: Decision, value: bytes | None) -> None:
        """A decision read from the topic: deliver it, unless the table says that was done (a re-read tail)."""
        state = self._state(item.decision.decision_id)
        if state is not None and state.status != d.PENDING:
            self._count("skipped")  # delivered or dead-lettered before a restart: not sent again
            return
        await self._attempt_all(client, item, value, state or DeliveryState.first(value, item.source))

    async def _attempt_all(
        self, client: httpx.AsyncClient, item: Decision, value: bytes | None, state: DeliveryState
    ) -> None:
        """Attempt from where ``state`` stands until delivered or out of budget; every outcome goes to the table."""
        key = item.decision.decision_id
        body = d.body_of(item)
        while True:
            wait_s = state.due_ms / 1000 - time.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)  # the backoff (or Retry-After) the last attempt set, kept across restarts
            failure = await d.post(client, self.url, self.secret, key, body)
            if failure is None:
                done_ms = int(time.time() * 1000)
                self._save(key, state.delivered(done_ms))
                self.pruning.delivered(item.source.partition, key, done_ms)
                self._count("delivered")
                return
            self._count("retried")
            state = state.failed(int(time.time() * 1000), d.wait_after(self.policy, failure, state.attempts + 1))
            if failure.final or state.attempts >= self.policy.max_attempts:
                break
            self._save(key, state)
        await self._send_letter(d.delivery_letter(item, value, failure, state, SINK, self.url))
        self._save(key, state.dead())  # after the letter is on the broker: a crash between them re-sends the letter

    # ------------------------------------------------------------------ redrives

    def _redrive_request(self, value: bytes | None, headers: Any, source: Source) -> RunControl | BadRecord:
        """A signed redrive request of a delivery letter, or why this record is none."""
        payload = value or b""
        try:
            control = from_bytes(payload, RunControl)
            authentication.verify(source.topic, control.control_id, payload, headers or [])
        except (DecodeError, authentication.Unauthenticated) as exc:
            return BadRecord(f"not a signed redrive request: {exc}", type(exc).__name__, payload, source)
        if control.action != "redrive" or not control.dead_letter_id or "/delivery/" not in control.dead_letter_id:
            return BadRecord(
                f"not a delivery redrive: {control.action} of {control.dead_letter_id}",
                "NotRedrivable",
                payload,
                source,
            )
        return control

    async def _redeliver(self, client: httpx.AsyncClient, control: RunControl) -> None:
        """Apply a redrive request in the run's turn: a fresh budget for the delivery its letter names."""
        letter = control.dead_letter_id or ""
        key = d.decision_of(letter)
        state = self._state(key)
        if state is None:
            log.warning("redrive %s: no delivery %s in this sink's table; ignored", control.control_id, key)
            return
        if state.redrive != control.control_id:
            if state.status != d.DEAD or letter != d.letter_id(key, SINK, state.generation):
                log.info(
                    "redrive %s: delivery %s is %s (generation %d); ignored",
                    letter,
                    key,
                    state.status,
                    state.generation,
                )
                return
            state = state.redriven(control.control_id)
            self._save(key, state)  # what `durable dlq redrive` waits for
            self._count("redriven")
            log.info("redrive %s: delivery %s re-queued by %s", letter, key, control.requested_by or "?")
        elif state.status != d.PENDING:
            return  # this request was applied and finished before a restart
        value, source = state.record()
        item = read(value, source)
        if isinstance(item, BadRecord):  # the table held what the topic held: cannot happen short of corruption
            raise RuntimeError(f"delivery {key} holds no readable decision: {item.reason}")
        await self._attempt_all(client, item, value, state)

    # ------------------------------------------------------------------ letters and counts

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n
        self.metrics.count(outcome, n)

    async def _send_letter(self, letter: DeadLetter) -> None:
        sent = await self.dead_letters.send(key=letter.dead_letter_id.encode(), value=to_bytes(letter))
        await sent  # acknowledged by the broker before the source record is acknowledged
        self._count("dead_lettered")
        log.warning("dead-lettered %s (%s): %s", letter.dead_letter_id, letter.error_type, letter.reason)
