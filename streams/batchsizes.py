"""How many records the orchestrator takes per poll: a distribution kept in memory, logged when it stops.

Every record of a poll is applied into one checkpoint (one produce-and-flush of its outputs, one of its
changelog, one RocksDB write batch per partition, one offset commit), so the batch size says how far those
fixed costs are shared. The same sizes go to the ``durable.orchestrator.batch`` histogram (streams.telemetry);
this copy is what ``bench/steps.py`` reads from a worker's log line, with no metrics exporter to run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

LOG_PREFIX = "orchestrator batch sizes: "
# Upper bounds of the buckets a summary prints (and of the OpenTelemetry histogram's buckets).
BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 500)
_LINE = re.compile(re.escape(LOG_PREFIX) + r"(\{.*\})")


@dataclass
class BatchSizes:
    """Counts of batches by size (records taken by one poll that returned any)."""

    counts: Counter[int] = field(default_factory=Counter)

    def add(self, size: int) -> None:
        if size > 0:
            self.counts[size] += 1

    def merge(self, other: BatchSizes) -> None:
        self.counts.update(other.counts)

    @property
    def batches(self) -> int:
        return sum(self.counts.values())

    @property
    def records(self) -> int:
        return sum(size * n for size, n in self.counts.items())

    def quantile(self, q: float) -> int:
        """The ``q`` quantile (nearest rank) of the batch sizes; 0 with no batches."""
        total = self.batches
        if not total:
            return 0
        rank = min(total - 1, int(q * total))
        seen = 0
        for size in sorted(self.counts):
            seen += self.counts[size]
            if seen > rank:
                return size
        return max(self.counts)

    def buckets(self) -> list[tuple[str, int]]:
        """Batches per bucket of ``BOUNDS`` (``"5-8"``: sizes 5 to 8), and ``">500"`` past the last."""
        out: list[tuple[str, int]] = []
        low = 1
        for high in BOUNDS:
            label = str(high) if low == high else f"{low}-{high}"
            out.append((label, sum(n for size, n in self.counts.items() if low <= size <= high)))
            low = high + 1
        out.append((f">{BOUNDS[-1]}", sum(n for size, n in self.counts.items() if size > BOUNDS[-1])))
        return out

    def log_line(self) -> str:
        """One line a reader finds again with :func:`from_log` (sizes as JSON: size -> batches)."""
        return LOG_PREFIX + json.dumps({str(k): v for k, v in sorted(self.counts.items())})


def from_log(text: str) -> BatchSizes:
    """The sizes of every :meth:`BatchSizes.log_line` in ``text``, merged (a restarted worker logs several)."""
    sizes = BatchSizes()
    for match in _LINE.finditer(text):
        sizes.merge(BatchSizes(Counter({int(k): int(v) for k, v in json.loads(match.group(1)).items()})))
    return sizes
