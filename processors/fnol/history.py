"""The claims-history table the fraud check reads: prior claims per policy and per claimant.

Shipped as ``history.json``, a stand-in for an extract of the claims system
(claims in the last 12 months), regenerated deterministically from the sample
claims by ``python processors/fnol/make_history.py``. Policies are keyed by
number; claimants by their per-tenant name token
(``processors.pii.token("name", name, tenant)``) under the public demo and
test key ``processors.pii.DEMO_KEY``, which ``durable demo`` and the tests
set. Tokens depend on ``DURABLE_PII_KEY``: under another key (as in
production) no claimant matches and only the policy history counts; a real
deployment loads its own extract, tokenised under its own key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HISTORY_FILE = Path(__file__).resolve().parent / "history.json"


@cache
def table() -> dict[str, dict[str, int]]:
    """The table: {"policies": {number: n}, "claimants": {name_token: n}}."""
    data: dict[str, dict[str, int]] = json.loads(HISTORY_FILE.read_text(encoding="utf-8"))
    return data


def prior_claims(policy_number: str, claimant_token: str) -> tuple[int, int]:
    """Claims in the last 12 months on the policy, and by the claimant (0 when unknown)."""
    t = table()
    return t["policies"].get(policy_number, 0), t["claimants"].get(claimant_token, 0)
