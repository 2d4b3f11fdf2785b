"""Per-tenant run budgets: latency and cost, with defaults from the seed (3.00 s, $0.025).

Shipped in ``budgets.json`` (a ``default`` entry and one per tenant);
``DURABLE_FNOL_BUDGETS`` (the same JSON shape) overrides entries, e.g.
``{"acme": {"latency_s": 2.5}}`` or ``{"default": {"cost_usd": 0.05}}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUDGETS_FILE = Path(__file__).resolve().parent / "budgets.json"


@dataclass(frozen=True)
class Budget:
    """What one run of a tenant may spend."""

    latency_s: float = 3.0
    cost_usd: float = 0.025


def _table() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = json.loads(BUDGETS_FILE.read_text())
    override = os.environ.get("DURABLE_FNOL_BUDGETS")
    if override:
        for tenant, entry in json.loads(override).items():
            table[tenant] = {**table.get(tenant, {}), **entry}
    return table


def budget_for(tenant_id: str) -> Budget:
    """The tenant's budget: its own entry over the default entry over the seed's figures."""
    table = _table()
    entry = {**table.get("default", {}), **table.get(tenant_id, {})}
    return Budget(
        latency_s=float(entry.get("latency_s", Budget.latency_s)),
        cost_usd=float(entry.get("cost_usd", Budget.cost_usd)),
    )
