"""The webhook sink's Faust app: POST each decision, retry what failed, dead-letter what never succeeded.

Per record, in partition order: a decision is POSTed as JSON with
``Idempotency-Key: <decision_id>`` and a ``Durable-Signature`` (:mod:`.signing`);
timeouts, connection errors, 5xx and 429 are retried with exponential backoff
(a 429's ``Retry-After`` honoured, capped); another 4xx is final. A decision
that exhausts its attempts becomes a dead letter of kind ``delivery``. Only
then is the record acknowledged to Faust: a SIGKILLed sink re-sends at most
the uncommitted tail, with the same idempotency keys, and loses nothing.

Not built yet (issue 11): delivery state in a Faust table, so that one run's
failing delivery does not hold back the runs behind it on its partition (here
it does, for at most its retry budget), and redriving ``delivery`` letters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
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
        async with httpx.AsyncClient(timeout=self.policy.timeout_s) as client:
            async for event in manual.events():
                message = event.message
                await self.handle(client, message.value, Source(message.topic, message.partition, message.offset))
                await manual.ack(event)

    async def handle(self, client: httpx.AsyncClient, value: bytes | None, source: Source) -> None:
        item = read(value, source)
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
