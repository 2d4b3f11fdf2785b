"""The webhook sink's Faust app: POST each decision, retry what failed, dead-letter what never succeeded.

Per record, in partition order: a decision is POSTed as JSON with
``Idempotency-Key: <decision_id>`` and a ``Durable-Signature`` (:mod:`.signing`);
timeouts, connection errors, 5xx and 429 are retried with exponential backoff
(a 429's ``Retry-After`` honoured, capped); another 4xx is final. A decision
that exhausts its attempts becomes a dead letter of kind ``delivery``. Only
then is the record acknowledged to Faust: a SIGKILLed sink re-sends at most
the uncommitted tail, with the same idempotency keys, and loses nothing.

A run's decisions are delivered one after the other, in order; different
runs' deliveries run concurrently (up to ``DeliveryPolicy.concurrency``), so
one run's failing endpoint calls hold back no other run. Records are still
acknowledged in offset order per partition (:class:`InOrderAcks`): Faust
derives the offset it commits from the acknowledged ones and, for a group
with no commit yet, does not stop at a gap, so acknowledging a later record
first could commit past an undelivered one.

Not built yet (issue 11): delivery state in a Faust table (a restart re-sends
the uncommitted tail instead of resuming each delivery's schedule), and
redriving ``delivery`` letters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
import httpx

from connectors.sinks.decisions import BadRecord, Decision, Source, dead_letter, read
from connectors.sinks.faust_app import sink_app
from connectors.sinks.health import SinkMetrics
from connectors.sinks.webhook.signing import HEADER, sign
from schemas import to_bytes
from schemas.models import DeadLetter
from streams.config import Settings
from streams.topics import Topics

SINK = "webhook"
log = logging.getLogger("durable.sink.webhook")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the sink tries: per-request timeout, attempts, and backoff (doubling from ``backoff_s``)."""

    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 0.5
    backoff_cap_s: float = 60.0
    concurrency: int = 64


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


def body_of(decision: Decision) -> bytes:
    """The JSON body: the decision's fields, keys sorted, no spaces (what the signature covers)."""
    return json.dumps(decision.decision.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    return float(raw) if raw.strip().isdigit() else None


class WebhookSink:
    """The sink's app, its HTTP client settings and what it counted."""

    def __init__(
        self, settings: Settings, url: str, secret: bytes, policy: DeliveryPolicy, web_port: int | None = None
    ) -> None:
        self.settings, self.url, self.secret, self.policy = settings, url, secret, policy
        self.app = sink_app(settings, SINK, web_port)
        self.counts: Counter[str] = Counter()
        self.metrics = SinkMetrics(settings, SINK)
        decisions = self.app.topic(
            Topics(settings.namespace).name("decisions"), key_serializer="raw", value_serializer="raw"
        )
        self.dead_letters = self.app.topic(
            Topics(settings.namespace).dead_letters, key_serializer="raw", value_serializer="raw"
        )
        self.app.agent(decisions, name=f"{settings.namespace}.sink.webhook.decisions")(self._consume)

    async def _consume(self, stream: faust.StreamT[Any]) -> None:
        manual = cast(faust.Stream[Any], stream).noack()  # acknowledged by hand, once delivered or dead-lettered
        acks = InOrderAcks(manual.ack)
        in_flight = asyncio.Semaphore(self.policy.concurrency)
        last_of_run: dict[str, asyncio.Task[None]] = {}
        async with httpx.AsyncClient(timeout=self.policy.timeout_s) as client:
            async for event in manual.events():
                message = event.message
                source = Source(message.topic, message.partition, message.offset)
                item = read(message.value, source)
                run = item.decision.run_id if isinstance(item, Decision) else f"record:{source}"
                slot = acks.add(event)
                await in_flight.acquire()
                task = asyncio.ensure_future(
                    self._in_turn(last_of_run.get(run), client, item, message.value, slot, acks, in_flight)
                )
                last_of_run[run] = task
                task.add_done_callback(partial(_forget, last_of_run, run))

    async def _in_turn(
        self,
        before: asyncio.Task[None] | None,
        client: httpx.AsyncClient,
        item: Decision | BadRecord,
        value: bytes | None,
        slot: _Slot,
        acks: InOrderAcks,
        in_flight: asyncio.Semaphore,
    ) -> None:
        """Deliver after the run's previous decision is done, then acknowledge in partition order."""
        try:
            if before is not None:
                await asyncio.wait([before])  # its outcome is its own; only its turn matters here
            await self.handle(client, item, value)
            await acks.done(slot)
        except Exception:  # unacknowledged, so redelivered after a restart: logged, never lost
            log.exception("decision at %s not delivered nor dead-lettered", item.source)
        finally:
            in_flight.release()

    async def handle(self, client: httpx.AsyncClient, item: Decision | BadRecord, value: bytes | None) -> None:
        source = item.source
        if isinstance(item, BadRecord):
            await self._send_letter(dead_letter(item, SINK))
            return
        failure = await self.deliver(client, item)
        if failure is None:
            self._count("delivered")
            return
        reason, error_type, attempts = failure
        letter = DeadLetter(
            dead_letter_id=f"{item.decision.decision_id}/delivery/{SINK}",
            reason=f"sink {SINK}: {reason} after {attempts} attempt(s) to {self.url}"[:2000],
            error_type=error_type,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            run_id=item.decision.run_id,
            payload=value or b"",
            at_ms=int(time.time() * 1000),
            kind="delivery",
            attempt=attempts,
        )
        await self._send_letter(letter)

    async def deliver(self, client: httpx.AsyncClient, item: Decision) -> tuple[str, str, int] | None:
        """POST until acknowledged (None) or the budget is spent: (last reason, its type, attempts)."""
        body = body_of(item)
        delay = self.policy.backoff_s
        reason, error_type = "", ""
        for attempt in range(1, self.policy.max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": item.decision.decision_id,
                HEADER: sign(self.secret, body, int(time.time())),
            }
            wait = delay
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:  # timeouts, refused or reset connections
                reason, error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    return None
                reason, error_type = f"HTTP {response.status_code}", f"HTTP{response.status_code}"
                if response.status_code == 429:
                    wait = min(_retry_after(response) or delay, self.policy.backoff_cap_s)
                elif response.status_code < 500:
                    return reason, error_type, attempt  # the endpoint refuses this request: retrying cannot help
            self._count("retried")
            if attempt < self.policy.max_attempts:
                await asyncio.sleep(wait)  # backoff before the next attempt
                delay = min(delay * 2, self.policy.backoff_cap_s)
        return reason, error_type, self.policy.max_attempts

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self.metrics.count(outcome)

    async def _send_letter(self, letter: DeadLetter) -> None:
        sent = await self.dead_letters.send(key=letter.dead_letter_id.encode(), value=to_bytes(letter))
        await sent  # acknowledged by the broker before the source record is acknowledged
        self._count("dead_lettered")
        log.warning("dead-lettered %s (%s): %s", letter.dead_letter_id, letter.error_type, letter.reason)
