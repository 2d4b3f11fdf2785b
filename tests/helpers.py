"""Test helpers: claims to produce, and checks of exactly-once outcomes."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from connectors.sources.fnol import GoodLine, parse_lines
from streams.config import Settings
from streams.io import produce_reports
from streams.topics import Topics
from tests.conftest import ROOT, read_topic

SAMPLES = ROOT / "connectors" / "samples" / "fnol.jsonl"


def sample_claims(n: int | None = None, prefix: str = "") -> list[GoodLine]:
    """Valid tokenised sample claims; with ``prefix``, claim ids are made unique per call."""
    lines = SAMPLES.read_text().splitlines()
    out: list[GoodLine] = []
    i = 0
    while (n is None and i < len(lines)) or (n is not None and len(out) < n):
        data = json.loads(lines[i % len(lines)])
        if prefix:
            data["claim_id"] = f"{prefix}{i:05d}"
        good = next(iter(parse_lines([json.dumps(data)])))
        assert isinstance(good, GoodLine)
        out.append(good)
        i += 1
        if n is None and i >= len(lines):
            break
    return out


def produce(settings: Settings, claims: list[GoodLine]) -> None:
    produce_reports(settings, Topics(settings.namespace).name("fnol.reported"), [(c.run_id, c.record) for c in claims])


def decisions(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings, Topics(settings.namespace).name("decisions"))


def journal(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings, Topics(settings.namespace).name("runs.journal"))


def assert_exactly_once(settings: Settings, run_ids: set[str]) -> None:
    """Every run decided once on the topic, and every transition journaled once, gapless."""
    decided = decisions(settings)
    counts = Counter(d["run_id"] for d in decided)
    dupes = {r: c for r, c in counts.items() if c > 1}
    assert not dupes, f"decisions written more than once: {dupes}"
    assert set(counts) == run_ids, f"missing decisions: {sorted(run_ids - set(counts))[:5]}"

    events = journal(settings)
    ids = Counter(e["event_id"] for e in events)
    assert not [i for i, c in ids.items() if c > 1], (
        f"journal events written twice: {[i for i, c in ids.items() if c > 1][:5]}"
    )
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_run[e["run_id"]].append(e)
    for run_id in run_ids:
        seqs = sorted(e["seq"] for e in by_run[run_id])
        assert seqs == list(range(1, len(seqs) + 1)), f"{run_id}: journal seqs not gapless: {seqs}"
        kinds = [e["kind"] for e in sorted(by_run[run_id], key=lambda e: e["seq"])]
        assert kinds[0] == "RUN_STARTED" and kinds.count("RUN_STARTED") == 1, f"{run_id}: {kinds}"
        assert kinds[-1] in ("RUN_COMPLETED", "RUN_FAILED"), f"{run_id} did not finish: {kinds}"
        assert kinds.count("RUN_COMPLETED") + kinds.count("RUN_FAILED") == 1, f"{run_id}: {kinds}"
        scheduled = Counter((e["step"], e["attempt"]) for e in by_run[run_id] if e["kind"] == "STEP_SCHEDULED")
        assert all(c == 1 for c in scheduled.values()), f"{run_id}: a step attempt scheduled twice: {scheduled}"
