"""Per-tenant request rates with the ``limits`` library: 429 with ``Retry-After`` past them.

Each tenant has two moving windows: ``burst`` requests in any one second, and
``per_second`` x 60 in any one minute (so a burst is allowed, a sustained
rate above ``per_second`` is not). Counters live in memory by default, or in
Redis (``DURABLE_GATEWAY_RATE_STORAGE=redis://127.0.0.1:6379``) when several
gateways share one limit.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from connectors.gateway.config import GatewayConfig
from connectors.gateway.problems import Problem


def _async_uri(uri: str) -> str:
    return uri if uri.startswith("async+") else f"async+{uri}"


class TenantLimits:
    """The gateway's limiter: one per process, counters in the configured storage."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        uri = _async_uri(config.rate_storage)
        # redis-py (a dependency already) rather than limits' default async client, coredis.
        options = {"implementation": "redispy"} if uri.startswith(("async+redis://", "async+rediss://")) else {}
        storage = storage_from_string(uri, **options)
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, tuple[RateLimitItem, RateLimitItem]] = {}

    def _items_of(self, tenant: str) -> tuple[RateLimitItem, RateLimitItem]:
        if tenant not in self._items:
            rate = self.config.rate_of(tenant)
            self._items[tenant] = (
                RateLimitItemPerSecond(max(1, math.floor(rate.burst))),
                RateLimitItemPerMinute(max(1, math.floor(rate.per_second * 60))),
            )
        return self._items[tenant]

    async def hit(self, tenant: str) -> None:
        """Count one request of ``tenant``; a 429 problem if it is over either window."""
        for item in self._items_of(tenant):
            if not await self._limiter.hit(item, "gateway", tenant):
                stats = await self._limiter.get_window_stats(item, "gateway", tenant)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise Problem(
                    429,
                    f"tenant {tenant} is over its rate limit ({item}); retry after {wait} s",
                    type_="rate-limited",
                    headers={"Retry-After": str(wait)},
                )
