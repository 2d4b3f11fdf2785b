"""One delivery: its state (kept in the sink's Faust table), one HTTP attempt, and when the next one is due.

Pure but for :func:`post` (one request): the state's JSON form, the backoff and
the dead letter are unit-tested without a broker or an endpoint.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import httpx

from connectors.sinks.decisions import Decision, Source
from connectors.sinks.webhook.signing import HEADER, sign
from schemas.models import DeadLetter

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the sink tries: per-request timeout, attempts, and backoff (doubling from ``backoff_s``)."""

    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 0.5
    backoff_cap_s: float = 60.0
    concurrency: int = 64
    delivered_retention_s: float = 86_400.0  # how long a delivered entry stays in the table (see app.Pruning)

    def backoff(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th failed attempt: ``backoff_s`` doubled each time, capped."""
        return float(min(self.backoff_s * 2 ** max(0, failed - 1), self.backoff_cap_s))


@dataclass(frozen=True)
class DeliveryState:
    """Where one decision's delivery stands; the table holds it under the decision id.

    ``attempts`` and ``due_ms`` are those of the current generation (a redrive
    starts a new one with a fresh budget); ``generation`` names the dead letter
    the delivery becomes if it runs out. The decision's bytes and where they were
    read are kept while the delivery may still need them (pending, dead: a
    redrive re-sends them), and dropped once delivered.
    """

    status: str = PENDING
    attempts: int = 0
    due_ms: int = 0
    generation: int = 1
    redrive: str | None = None  # the redrive request that started this generation
    payload: str | None = None  # base64 of the decision record
    source: tuple[str, int, int] | None = None
    done_ms: int = 0  # when it was delivered: the entry is forgotten a retention period later (app.Pruning)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeliveryState:
        source = data.get("source")
        return cls(
            status=str(data.get("status", PENDING)),
            attempts=int(data.get("attempts", 0)),
            due_ms=int(data.get("due_ms", 0)),
            generation=int(data.get("generation", 1)),
            redrive=data.get("redrive"),
            payload=data.get("payload"),
            source=(str(source[0]), int(source[1]), int(source[2])) if source else None,
            done_ms=int(data.get("done_ms", 0)),
        )

    @classmethod
    def first(cls, value: bytes | None, source: Source) -> DeliveryState:
        """A new delivery, keeping the record until it is delivered."""
        return cls(
            payload=base64.b64encode(value or b"").decode(), source=(source.topic, source.partition, source.offset)
        )

    def record(self) -> tuple[bytes, Source]:
        """The decision's bytes and where they were read (for a redrive)."""
        src = self.source or ("", -1, -1)
        return base64.b64decode(self.payload or ""), Source(*src)

    def failed(self, now_ms: int, wait_s: float) -> DeliveryState:
        return replace(self, attempts=self.attempts + 1, due_ms=now_ms + int(wait_s * 1000))

    def delivered(self, now_ms: int) -> DeliveryState:
        return replace(self, status=DELIVERED, payload=None, due_ms=0, done_ms=now_ms)

    def dead(self) -> DeliveryState:
        return replace(self, status=DEAD, due_ms=0)

    def redriven(self, control_id: str) -> DeliveryState:
        """A fresh budget under the next generation, started by redrive request ``control_id``."""
        return replace(self, status=PENDING, attempts=0, due_ms=0, generation=self.generation + 1, redrive=control_id)


def letter_id(decision_id: str, sink: str, generation: int) -> str:
    """The dead letter of a delivery's ``generation``: a redriven delivery that runs out again is a new letter."""
    return f"{decision_id}/delivery/{sink}/{generation}"


def decision_of(dead_letter_id: str) -> str:
    """The decision id a delivery letter id names."""
    return dead_letter_id.rsplit("/delivery/", 1)[0]


@dataclass(frozen=True)
class Failure:
    """Why one attempt failed, whether retrying can help, and the wait the endpoint asked for (429)."""

    reason: str
    error_type: str
    final: bool = False
    retry_after_s: float | None = None


def body_of(decision: Decision) -> bytes:
    """The JSON body: the decision's fields, keys sorted, no spaces (what the signature covers)."""
    return json.dumps(decision.decision.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    return float(raw) if raw.strip().isdigit() else None


async def post(client: httpx.AsyncClient, url: str, secret: bytes, key: str, body: bytes) -> Failure | None:
    """One attempt: None when the endpoint acknowledged it (2xx), else why not."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key, HEADER: sign(secret, body, int(time.time()))}
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:  # timeouts, refused or reset connections
        return Failure(f"{type(exc).__name__}: {exc}", type(exc).__name__)
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status == 429:
        return Failure("HTTP 429", "HTTP429", retry_after_s=_retry_after(response))
    # Another 4xx: the endpoint refuses this request, and retrying cannot help.
    return Failure(f"HTTP {status}", f"HTTP{status}", final=status < 500)


def wait_after(policy: DeliveryPolicy, failure: Failure, failed: int) -> float:
    """Seconds until the next attempt: the endpoint's Retry-After (capped) for a 429, else the backoff."""
    if failure.retry_after_s is not None:
        return min(failure.retry_after_s, policy.backoff_cap_s)
    return policy.backoff(failed)


def delivery_letter(
    item: Decision, value: bytes | None, failure: Failure, state: DeliveryState, sink: str, url: str
) -> DeadLetter:
    """The dead letter of a delivery that ran out of attempts (or was refused for good)."""
    source = item.source
    return DeadLetter(
        dead_letter_id=letter_id(item.decision.decision_id, sink, state.generation),
        reason=f"sink {sink}: {failure.reason} after {state.attempts} attempt(s) to {url}"[:2000],
        error_type=failure.error_type,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        run_id=item.decision.run_id,
        payload=value or b"",
        at_ms=int(time.time() * 1000),
        kind="delivery",
        attempt=state.attempts,
    )
