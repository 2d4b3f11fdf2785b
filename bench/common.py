"""What the benchmark scripts share: claims to send and percentiles."""

from __future__ import annotations

import json
from pathlib import Path

from connectors.sources.fnol import GoodLine, parse_lines

SAMPLES = (Path(__file__).resolve().parent.parent / "connectors/samples/fnol.jsonl").read_text().splitlines()


def claims(n: int, tag: str, vary: bool = True) -> list[GoodLine]:
    """``n`` valid tokenised claims with ids ``<tag><i>``: the samples in turn, or (``vary=False``) the first."""
    out = []
    for i in range(n):
        data = json.loads(SAMPLES[i % len(SAMPLES)] if vary else SAMPLES[0])
        data["claim_id"] = f"{tag}{i:06d}"
        good = next(iter(parse_lines([json.dumps(data)])))
        assert isinstance(good, GoodLine)
        out.append(good)
    return out


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
