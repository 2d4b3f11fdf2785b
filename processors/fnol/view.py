"""How an FNOL decision reads in one line (what `durable demo` and `durable trace` print)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CURRENCY = {"GBP": "£", "USD": "$", "EUR": "€"}


def describe(decision: Mapping[str, Any]) -> str:
    """E.g. ``ROUTED · reserve £5,600 · standard_claims · MEDIUM · docs: photos_of_damage · medium severity``."""
    currency = str(decision.get("currency", ""))
    symbol = CURRENCY.get(currency, f"{currency} ")
    documents = ", ".join(str(d) for d in decision.get("documents_requested") or []) or "-"
    reasons = "; ".join(str(r) for r in decision.get("reasons") or [])
    line = (
        f"{decision.get('status')} · reserve {symbol}{float(decision.get('reserve', 0)):,.0f} · {decision.get('queue')}"
        f" · {decision.get('severity')} · docs: {documents}"
    )
    return f"{line} · {reasons}" if reasons else line
