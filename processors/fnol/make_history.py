"""Regenerate history.json: ``python processors/fnol/make_history.py [claims.jsonl ...]``.

Default input: processors/fnol/samples/fnol.jsonl. Each policy number and each
claimant of the claims gets a count of prior claims drawn from a hash of the
number or name (most have none, a few are frequent claimants), claimants
keyed by their per-tenant name token under the public demo and test key
``processors.pii.DEMO_KEY``, whatever ``DURABLE_PII_KEY`` says. The demo and
the tests set that key; under any other key no claimant matches.
Deterministic: the file changes only when the claims or this rule do.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_CLAIMS = ROOT / "processors" / "fnol" / "samples" / "fnol.jsonl"
HISTORY_FILE = HERE / "history.json"


def _count(*parts: str) -> int:
    digest = int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")
    return [0, 0, 0, 0, 1, 1, 2, 4][digest % 8]  # most have none, a few are frequent claimants


def build(claims: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The table for these raw claims (claimant names are tokenised per tenant under the demo key)."""
    from processors import pii

    saved = os.environ.get(pii.KEY_ENV)
    os.environ[pii.KEY_ENV] = pii.DEMO_KEY
    try:
        policies: dict[str, int] = {}
        claimants: dict[str, int] = {}
        for claim in claims:
            policies[claim["policy_number"]] = _count("policy", claim["policy_number"])
            claimants[pii.token("name", claim["claimant"]["name"], claim["tenant_id"])] = _count("claimant", claim["claimant"]["name"])
    finally:
        if saved is None:
            os.environ.pop(pii.KEY_ENV, None)
        else:
            os.environ[pii.KEY_ENV] = saved
    return {"policies": dict(sorted(policies.items())), "claimants": dict(sorted(claimants.items()))}


def main(argv: list[str]) -> None:
    files = [Path(a) for a in argv] or [DEFAULT_CLAIMS]
    rows = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    HISTORY_FILE.write_text(json.dumps(build(rows), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {HISTORY_FILE} ({len(rows)} claims)")


if __name__ == "__main__":
    main(sys.argv[1:])
