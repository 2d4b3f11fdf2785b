"""How new consumers' fetch waits are sized from the embedded broker's partition sizes (streams.wall)."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from streams import wall
from streams.config import Settings


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The batch counts the fake probe reports; tests change them in place."""
    lookups: list[float] = [200, 0]
    monkeypatch.setattr(wall, "is_embedded", lambda settings: True)
    monkeypatch.setattr(wall, "_waits", {})

    def measure(settings: Settings, only: Collection[str] | None = None) -> list[wall.PartitionSize]:
        return [wall.PartitionSize("ns.t", 0, int(n), int(n)) for n in lookups]

    monkeypatch.setattr(wall, "measure", measure)
    return lookups


S = Settings(bootstrap_servers="127.0.0.1:1", namespace="ns")


def test_small_partitions_keep_the_floor(probed: list[float]) -> None:
    assert wall.fetch_wait_ms(S, 2) == 2


def test_slow_lookups_get_headroom_times_the_slowest(probed: list[float]) -> None:
    probed[:] = [3000, 1000]
    assert wall.fetch_wait_ms(S, 2) == int(wall.HEADROOM * 3000 * wall.LOOKUP_US_PER_BATCH / 1000) + 1


def test_the_wait_is_capped(probed: list[float]) -> None:
    probed[:] = [400_000]
    assert wall.fetch_wait_ms(S, 2) == wall.MAX_FETCH_WAIT_MS


def test_a_measurement_stands_until_forgotten(probed: list[float]) -> None:
    probed[:] = [3000]
    first = wall.fetch_wait_ms(S, 2)
    probed[:] = [10_000]
    assert wall.fetch_wait_ms(S, 2) == first  # cached
    wall.forget(S)
    assert wall.fetch_wait_ms(S, 2) > first


def test_a_failed_probe_never_stops_a_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wall, "is_embedded", lambda settings: True)
    monkeypatch.setattr(wall, "_waits", {})

    def broken(settings: Settings, only: Collection[str] | None = None) -> list[wall.PartitionSize]:
        raise OSError("connection refused")

    monkeypatch.setattr(wall, "measure", broken)
    assert wall.fetch_wait_ms(S, 2) == 2


def test_real_kafka_is_never_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wall, "is_embedded", lambda settings: False)

    def never(settings: Settings, only: Collection[str] | None = None) -> list[wall.PartitionSize]:
        raise AssertionError("probed a real Kafka cluster")

    monkeypatch.setattr(wall, "measure", never)
    assert wall.fetch_wait_ms(S, 2) == 2


@pytest.mark.parametrize(("fraction", "level"), [(0.1, "ok"), (0.5, "warning"), (0.79, "warning"), (0.8, "critical")])
def test_severity(fraction: float, level: str) -> None:
    assert wall.severity(fraction) == level


def test_the_wall_in_batches_follows_the_fetch_wait() -> None:
    assert wall.wall_batches(2) * 250 == wall.wall_batches(500)
    size = wall.PartitionSize("ns.t", 0, 5000, wall.wall_batches(2))
    assert size.fraction(2) == pytest.approx(1.0)
