"""Forgetting delivered webhook deliveries (connectors.sinks.webhook.pruning), on a plain dict as the table."""

from __future__ import annotations

from typing import Any

from connectors.sinks.webhook.delivery import DELIVERED, PENDING, DeliveryState
from connectors.sinks.webhook.pruning import Pruning

HOUR_MS = 3_600_000


def entry(partition: int, status: str = DELIVERED, done_ms: int = 0) -> dict[str, Any]:
    return DeliveryState(status=status, source=("ns.decisions", partition, 7), done_ms=done_ms).to_json()


def test_only_entries_delivered_longer_ago_than_the_retention_on_the_events_partition_are_deleted() -> None:
    table: dict[str, Any] = {
        "old-p0": entry(0, done_ms=1 * HOUR_MS),
        "new-p0": entry(0, done_ms=9 * HOUR_MS),
        "old-p1": entry(1, done_ms=1 * HOUR_MS),
        "pending-p0": entry(0, PENDING),
        "dead-p0": entry(0, "dead"),
    }
    pruning = Pruning(table, retention_s=2 * 3600, every_s=0)
    assert pruning.prune(0, now_ms=10 * HOUR_MS) == 1
    assert "old-p0" not in table, "delivered 9 hours ago, retention 2 hours"
    assert {"new-p0", "old-p1", "pending-p0", "dead-p0"} <= set(table), "newer, other partition, not delivered"
    assert pruning.prune(1, now_ms=10 * HOUR_MS) == 1 and "old-p1" not in table


def test_deliveries_noted_after_the_scan_are_forgotten_in_turn_and_a_redelivered_entry_is_kept() -> None:
    table: dict[str, Any] = {}
    pruning = Pruning(table, retention_s=60, every_s=0)
    assert pruning.prune(0, now_ms=0) == 0  # the partition is indexed (empty) from here on
    for i, key in enumerate(("a", "b", "c")):
        table[key] = entry(0, done_ms=i * 1000)
        pruning.delivered(0, key, i * 1000)
    table["b"] = entry(0, done_ms=50_000)  # b was delivered again since (a reset offset): the newer one counts
    assert pruning.prune(0, now_ms=61_500) == 1, "only a is past the retention"
    assert set(table) == {"b", "c"}
    assert pruning.prune(0, now_ms=62_000) == 1 and set(table) == {"b"}, "b's old delivery is not b's entry now"


def test_entries_from_before_deliveries_were_timed_count_from_the_scan() -> None:
    table: dict[str, Any] = {"legacy": {"status": DELIVERED, "source": ["ns.decisions", 0, 3]}}
    pruning = Pruning(table, retention_s=60, every_s=0)
    assert pruning.prune(0, now_ms=1_000_000) == 0, "kept one retention from the upgrade"
    assert pruning.prune(0, now_ms=1_060_000) == 1 and not table


def test_a_revoked_partition_is_scanned_again_when_it_comes_back() -> None:
    table: dict[str, Any] = {}
    pruning = Pruning(table, retention_s=60, every_s=0)
    pruning.prune(0, now_ms=0)
    pruning.forget({0})
    table["elsewhere"] = entry(0, done_ms=1)  # delivered by the worker that held partition 0 meanwhile
    pruning.delivered(0, "ignored-until-scanned", 0)
    assert pruning.prune(0, now_ms=61_000) == 1 and not table
