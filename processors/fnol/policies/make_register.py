"""Regenerate register.json from claims files: ``python processors/fnol/policies/make_register.py [claims.jsonl ...]``.

Default input: processors/fnol/samples/fnol.jsonl. Every policy number in the
claims gets a record by the register rule (``processors.fnol.retrieval.register``):
product by the claim's line, dates from a hash of the number (numbers ending
in 0 lapsed before the loss), endorsement LX on numbers ending in 9, and the
schedule its product's wording states. Deterministic: the file changes only
when the claims, the rule or the wordings do.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from processors.fnol.retrieval.register import PolicyRecord, PolicyRegister, product_for, synthesise_record
from processors.fnol.retrieval.retriever import POLICIES_DIR, PolicyRetriever

ROOT = POLICIES_DIR.parents[2]
DEFAULT_CLAIMS = ROOT / "processors" / "fnol" / "samples" / "fnol.jsonl"


def build(claims_files: list[Path]) -> dict[str, PolicyRecord]:
    """One record per policy number, from the first claim that names it."""
    wordings = PolicyRetriever(POLICIES_DIR, register=PolicyRegister({}))
    records: dict[str, PolicyRecord] = {}
    for path in claims_files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            claim = json.loads(line)
            number, loss_type = claim["policy_number"], claim["loss_type"]
            if number in records:
                continue
            schedule = wordings.standard_schedule(product_for(number, loss_type))
            loss_date = date.fromisoformat(claim["loss_date"])
            records[number] = synthesise_record(number, claim["tenant_id"], loss_type, loss_date, schedule)
    return records


def main(argv: list[str]) -> None:
    """Write register.json next to the wordings."""
    files = [Path(a) for a in argv] or [DEFAULT_CLAIMS]
    records = build(files)
    header = {
        "description": "Fictional policy register for the sample claims; regenerate with make_register.py.",
        "unknown_policies": "Numbers not listed here are not in the register: check_policy reports them as not found.",
    }
    # One policy per line: a diff of the register reads policy by policy.
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in header.items()]
    entries = [f"  {json.dumps(n)}: {json.dumps(records[n].to_json(), separators=(',', ':'))}" for n in sorted(records)]
    text = "{\n" + "\n".join(lines) + '\n "policies": {\n' + ",\n".join(entries) + "\n }\n}\n"
    target = POLICIES_DIR / "register.json"
    target.write_text(text, encoding="utf-8")
    print(f"wrote {len(records)} policies to {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
