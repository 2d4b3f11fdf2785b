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


TERMINAL = ("RUN_COMPLETED", "RUN_FAILED", "RUN_COMPENSATED")


def assert_exactly_once(settings: Settings, run_ids: set[str]) -> None:
    """Every run decided once per generation (a redrive starts a new one), every transition journaled once."""
    decided = decisions(settings)
    ids = Counter(d["decision_id"] for d in decided)
    assert not [i for i, c in ids.items() if c > 1], f"decisions written more than once: {ids.most_common(3)}"
    counts = Counter(d["run_id"] for d in decided)
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
        assert kinds[-1] in TERMINAL, f"{run_id} did not finish: {kinds}"
        generations = 1 + kinds.count("RUN_REDRIVEN")
        assert sum(kinds.count(k) for k in TERMINAL) == generations, f"{run_id}: {kinds}"
        assert counts[run_id] == generations, f"{run_id}: {counts[run_id]} decisions for {generations} generation(s)"
        for kind in ("STEP_SCHEDULED", "COMPENSATION_SCHEDULED"):
            scheduled = Counter((e["step"], e["attempt"]) for e in by_run[run_id] if e["kind"] == kind)
            assert all(c == 1 for c in scheduled.values()), f"{run_id}: an attempt scheduled twice: {scheduled}"
