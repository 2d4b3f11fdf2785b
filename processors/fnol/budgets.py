"""Per-tenant run budgets: latency and cost, with defaults from the seed (3.00 s, $0.025).

Shipped in ``budgets.json``: a ``default`` entry and one entry per tenant
that needs its own, each with ``latency_s`` and/or ``cost_usd``. The
environment variable ``DURABLE_FNOL_BUDGETS`` (the same JSON shape) overrides
entries field by field, e.g. ``{"acme": {"latency_s": 2.5}}`` or
``{"default": {"cost_usd": 0.05}}``. A tenant's budget, field by field, is
the first set of: the override's tenant entry, the override's default, the
file's tenant entry, the file's default, the seed's figures (so an override's
default applies to every tenant). The override is a workflow setting
(:data:`BUDGETS`): recorded with each attempt, served back on replay. Latency is the run's so far when
the evaluator runs (from the run's start, on the recorded clock); cost is the
sum of the run's model calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.engine.settings import Setting

BUDGETS_FILE = Path(__file__).resolve().parent / "budgets.json"
BUDGETS_ENV = "DURABLE_FNOL_BUDGETS"
_FIELDS = ("latency_s", "cost_usd")


class BudgetConfigError(ValueError):
    """The budgets table or its override is malformed: retrying cannot help."""

    retryable = False


@dataclass(frozen=True)
class Budget:
    """What one run of a tenant may spend."""

    latency_s: float = 3.0
    cost_usd: float = 0.025


def _entries(data: Any, where: str) -> dict[str, dict[str, float]]:
    if not isinstance(data, dict):
        raise BudgetConfigError(f"{where}: expected a JSON object of tenant -> budget, got {type(data).__name__}")
    table: dict[str, dict[str, float]] = {}
    for tenant, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - set(_FIELDS):
            raise BudgetConfigError(f"{where}: entry {tenant!r} must be an object with latency_s and/or cost_usd")
        for name, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise BudgetConfigError(f"{where}: {tenant}.{name} must be a number >= 0, not {value!r}")
        table[str(tenant)] = {name: float(value) for name, value in entry.items()}
    return table


def override_text(env: Mapping[str, str]) -> str:
    """The override as set in ``env`` (text, unparsed: a malformed one fails the evaluator, not the snapshot)."""
    return env.get(BUDGETS_ENV, "").strip()


BUDGETS = Setting("budgets", override_text, f"the budget override ({BUDGETS_ENV}), over the shipped budgets.json")


def _override(raw: str) -> dict[str, dict[str, float]]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BudgetConfigError(f"{BUDGETS_ENV} is not JSON: {exc}") from exc
    return _entries(data, BUDGETS_ENV)


def budget_for(tenant_id: str, override: str | None = None) -> Budget:
    """The tenant's budget (see the module docstring for which entry wins).

    ``override``: the override's text as recorded (the :data:`BUDGETS` setting); None: this process's.
    """
    shipped = _entries(json.loads(BUDGETS_FILE.read_text(encoding="utf-8")), str(BUDGETS_FILE))
    override_table = _override(override_text(os.environ) if override is None else override.strip())
    entry: dict[str, float] = {}
    for table in (shipped, override_table):
        entry |= table.get("default", {})
        entry |= table.get(tenant_id, {})
    return Budget(
        latency_s=entry.get("latency_s", Budget.latency_s),
        cost_usd=entry.get("cost_usd", Budget.cost_usd),
    )
