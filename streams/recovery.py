"""Taking partitions over: restore their runs, find what was written but not committed, re-arm their timers.

When the orchestrator is given partitions (at start, or in a rebalance after
another worker died), for all of them together it:

1. catches the local run table up from the changelog (:meth:`RunTable.restore`);
2. scans the tail of its own output partitions for records caused by inputs
   whose offsets are not committed: their ids are the *guard*, written again
   by no checkpoint (:mod:`streams.checkpoint`), since the inputs that caused
   them will be re-applied and recompute the same records;
3. lists the runs waiting out a retry backoff, whose timers the orchestrator
   re-arms (a retry that fell due while no worker ran fires at once);
4. notes, per topic read, the offset up to which uncommitted records had
   their writes made (:attr:`TakeOver.replay_to`). Those writes went out
   before the state that expects what answers them: a command may have been
   run, and its result be waiting, for a run whose state was never written.
   Until the inputs that start runs are re-applied up to there, the
   orchestrator holds the partition's results back (:mod:`streams.admission`),
   so no result arrives before its run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from schemas.models import RunState
from streams.checkpoint import ID_HEADER, SRC_HEADER
from streams.config import Settings
from streams.kafka import read_to_end, reader
from streams.reading import header
from streams.runtable import RunTable

SCAN_CHUNK = 2000
TIMER_SRC = "timer:"  # the ``src`` of records caused by a fired timer: no input offset says they were finished


@dataclass(frozen=True)
class TakeOver:
    """What taking one partition over found."""

    restored: int
    guard: set[str]
    waiting: list[RunState]
    replay_to: dict[str, int]  # topic read -> the offset past the last uncommitted record whose writes were made


def take_over(
    settings: Settings,
    table: RunTable,
    output_topics: list[str],
    partitions: list[int],
    committed: Mapping[tuple[str, int], int],
) -> dict[int, TakeOver]:
    """Restore, guard-scan and list the waiting runs of ``partitions`` (``committed``: the input offsets)."""
    restored = table.restore(settings, partitions)
    guards, replay_to = scan_written(settings, output_topics, partitions, committed)
    return {p: TakeOver(restored[p], guards[p], table.waiting(p), replay_to[p]) for p in partitions}


def scan_written(
    settings: Settings,
    output_topics: list[str],
    partitions: list[int],
    committed: Mapping[tuple[str, int], int],
) -> tuple[dict[int, set[str]], dict[int, dict[str, int]]]:
    """Per partition, the ids we wrote for inputs whose offsets are not committed, and how far those inputs go.

    Reads each output partition backwards in chunks until it reaches a
    record caused by an input that is committed: everything before that
    was caused by committed inputs too, which will not come again. All
    partitions of all output topics are read together, chunk by chunk.
    """
    ids: dict[int, set[str]] = {p: set() for p in partitions}
    replay_to: dict[int, dict[str, int]] = {p: {} for p in partitions}
    scan = reader(settings)
    try:
        bounds: dict[tuple[str, int], list[int]] = {}
        for topic in output_topics:
            for p in partitions:
                low, high = scan.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                bounds[(topic, p)] = [low, high]
        pending = [key for key, (low, high) in bounds.items() if high > low]
        while pending:
            starts = []
            for topic, p in pending:
                low, end = bounds[(topic, p)]
                start = max(low, end - SCAN_CHUNK)
                bounds[(topic, p)][1] = start
                starts.append(TopicPartition(topic, p, start))
            reached: set[tuple[str, int]] = set()
            for msg in read_to_end(scan, starts):
                src, mid = header(msg, SRC_HEADER), header(msg, ID_HEADER)
                if src is None or mid is None:
                    continue
                if src.startswith(TIMER_SRC):
                    ids[msg.partition() or 0].add(mid)  # no offset says it was finished: guard it
                    continue
                src_topic, src_part, src_off = src.rsplit(":", 2)
                if int(src_off) < committed.get((src_topic, int(src_part)), -1):
                    reached.add((msg.topic() or "", msg.partition() or 0))
                else:
                    ids[msg.partition() or 0].add(mid)
                    ends = replay_to.get(int(src_part))
                    if ends is not None:
                        ends[src_topic] = max(ends.get(src_topic, 0), int(src_off) + 1)
            pending = [k for k in pending if k not in reached and bounds[k][1] > bounds[k][0]]
    finally:
        scan.close()
    return ids, replay_to
