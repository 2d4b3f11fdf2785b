"""What every route shares: one :class:`Gateway` per app, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from connectors.gateway.auth import Principal, authenticate
from connectors.gateway.backpressure import InputLag
from connectors.gateway.config import GatewayConfig
from connectors.gateway.idempotency import IdempotencyRecord
from connectors.gateway.keys import KeyStore
from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.producer import InputProducer
from connectors.gateway.ratelimit import TenantLimits
from connectors.gateway.tail import JournalTail
from connectors.gateway.trust import DecisionCheck
from processors.engine.workflow import Workflow
from streams.config import Settings


@dataclass
class Gateway:
    """The gateway's parts: settings, the workflow it takes, keys, limits, and its Kafka clients."""

    settings: Settings
    config: GatewayConfig
    wf: Workflow
    keys: KeyStore
    limits: TenantLimits
    metrics: GatewayMetrics
    decisions: DecisionCheck
    lag: InputLag | None = None
    idempotency: IdempotencyRecord | None = None
    producer: InputProducer | None = None
    tail: JournalTail | None = None


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def caller(request: Request) -> Principal:
    """Authenticate the request and count it against its tenant's rate limit."""
    gw = gateway(request)
    who = authenticate(request, gw.keys)
    await gw.limits.hit(who.tenant)
    return who
