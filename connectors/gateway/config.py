"""The gateway's settings, from the environment (``DURABLE_GATEWAY_*``), beside the runtime's :class:`Settings`.

Rate limits are per tenant, in a table shaped like the FNOL budgets
(``processors/fnol/budgets.json``): a ``default`` entry and one per tenant
that needs its own, each with ``per_second`` (sustained) and ``burst`` (the
most in any one second), e.g.
``DURABLE_GATEWAY_RATE_LIMITS='{"default": {"per_second": 50, "burst": 100}, "acme": {"per_second": 5}}'``.
A tenant's entry is taken field by field over the default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_BODY = 256 * 1024
DEFAULT_RATE = {"per_second": 50.0, "burst": 100.0}


class GatewayConfigError(ValueError):
    """A gateway setting is malformed."""


@dataclass(frozen=True)
class RateLimit:
    """A tenant's request rate: ``per_second`` sustained (over a minute), at most ``burst`` in any one second."""

    per_second: float
    burst: float


def _rates(text: str) -> dict[str, dict[str, float]]:
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise GatewayConfigError(f"DURABLE_GATEWAY_RATE_LIMITS is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GatewayConfigError("DURABLE_GATEWAY_RATE_LIMITS must be an object of tenant -> {per_second, burst}")
    table: dict[str, dict[str, float]] = {}
    for tenant, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - {"per_second", "burst"}:
            raise GatewayConfigError(f"rate limit {tenant!r} must be an object with per_second and/or burst")
        for name, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise GatewayConfigError(f"rate limit {tenant}.{name} must be a number > 0, not {value!r}")
        table[str(tenant)] = {k: float(v) for k, v in entry.items()}
    return table


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway enforces and where it keeps its files."""

    state_dir: Path
    workflow: str = "fnol"
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_wait_s: float = 10.0
    # Inputs the orchestrator has not yet taken (summed over the input topic's partitions) past which new
    # runs get 503: a queue that long is minutes of work, and taking more only makes every run later.
    max_input_lag: int = 5000
    rate_storage: str = "memory://"
    rates: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def keys_path(self) -> Path:
        return Path(os.environ.get("DURABLE_GATEWAY_KEYS") or self.state_dir / "gateway" / "apikeys.json")

    @property
    def idempotency_path(self) -> Path:
        return self.state_dir / "gateway" / "idempotency.sqlite"

    def rate_of(self, tenant: str) -> RateLimit:
        merged = {**DEFAULT_RATE, **self.rates.get("default", {}), **self.rates.get(tenant, {})}
        return RateLimit(per_second=merged["per_second"], burst=max(merged["burst"], merged["per_second"]))

    @classmethod
    def from_env(cls, state_dir: Path, **overrides: Any) -> GatewayConfig:
        env = os.environ
        values: dict[str, Any] = {
            "state_dir": state_dir,
            "workflow": env.get("DURABLE_GATEWAY_WORKFLOW", "fnol"),
            "max_body_bytes": int(env.get("DURABLE_GATEWAY_MAX_BODY") or DEFAULT_MAX_BODY),
            "max_input_lag": int(env.get("DURABLE_GATEWAY_MAX_LAG") or 5000),
            # e.g. redis://127.0.0.1:6379 when several gateways share one limit
            "rate_storage": env.get("DURABLE_GATEWAY_RATE_STORAGE") or "memory://",
            "rates": _rates(env.get("DURABLE_GATEWAY_RATE_LIMITS") or "{}"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
