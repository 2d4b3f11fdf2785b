"""The orchestrator's batch-size distribution: quantiles, buckets, and the log line a bench reads back."""

from __future__ import annotations

from streams.batchsizes import BatchSizes, from_log


def test_quantiles_and_buckets_count_batches_not_records() -> None:
    sizes = BatchSizes()
    for size in [1] * 6 + [3, 3, 40, 600, 0]:  # an empty poll is not a batch
        sizes.add(size)
    assert (sizes.batches, sizes.records) == (10, 6 + 6 + 40 + 600)
    assert (sizes.quantile(0.5), sizes.quantile(0.8), sizes.quantile(0.9)) == (1, 40, 600)
    buckets = dict(sizes.buckets())
    assert (buckets["1"], buckets["3-4"], buckets["33-64"], buckets[">500"]) == (6, 2, 1, 1)
    assert sum(buckets.values()) == sizes.batches
    assert BatchSizes().quantile(0.5) == 0


def test_log_lines_are_found_in_a_log_and_merged() -> None:
    first, second = BatchSizes(), BatchSizes()
    for size in (1, 1, 7):
        first.add(size)
    second.add(7)
    log = f"12:00 INFO streams.orchestrator: {first.log_line()}\nother line\n... {second.log_line()}\n"
    merged = from_log(log)
    assert dict(merged.counts) == {1: 2, 7: 2}
    assert from_log("nothing here").batches == 0
