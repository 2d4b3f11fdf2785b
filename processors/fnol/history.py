"""The claims-history table the fraud check reads: prior claims per policy and per claimant.

Shipped as ``history.json`` (an extract from the claims system, regenerated
by ``python -m processors.fnol.history`` from the sample claims). Claimants are
keyed by their name token under the development PII key; with another
``DURABLE_PII_KEY`` only the policy history matches.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

HISTORY_FILE = Path(__file__).resolve().parent / "history.json"


@cache
def table() -> dict[str, dict[str, int]]:
    data: dict[str, dict[str, int]] = json.loads(HISTORY_FILE.read_text())
    return data


def prior_claims(policy_number: str, claimant_token: str) -> tuple[int, int]:
    """Claims in the last 12 months on the policy, and by the claimant (0 when unknown)."""
    t = table()
    return t["policies"].get(policy_number, 0), t["claimants"].get(claimant_token, 0)


def _count(*parts: str) -> int:
    digest = int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")
    return [0, 0, 0, 0, 1, 1, 2, 4][digest % 8]  # most have none, a few are frequent claimants


def build(claims: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    from connectors import pii

    policies: dict[str, int] = {}
    claimants: dict[str, int] = {}
    for claim in claims:
        policies[claim["policy_number"]] = _count("policy", claim["policy_number"])
        token = pii.token("name", claim["claimant"]["name"])
        claimants[token] = _count("claimant", claim["claimant"]["name"])
    return {"policies": dict(sorted(policies.items())), "claimants": dict(sorted(claimants.items()))}


if __name__ == "__main__":
    samples = Path(__file__).resolve().parents[2] / "connectors" / "samples" / "fnol.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    HISTORY_FILE.write_text(json.dumps(build(rows), indent=1) + "\n")
    print(f"wrote {HISTORY_FILE}")
