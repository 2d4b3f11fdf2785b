"""Bounded state without a broker: the run table's expiry indexes, the sweep, re-submissions, topic roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.engine.canonical import canonical_json
from schemas import from_bytes, to_bytes
from schemas.models import ExpiredRun, RunState, RunStatus, StepState, StepStatus
from streams import retention
from streams.config import DAY_S, Settings
from streams.runtable import Changes, RunTable
from streams.topics import Topics, topic_config

INPUT = {"claim_id": "CLM-1", "amount": 10}


def state(run_id: str, status: RunStatus, updated_at_ms: int, due_at_ms: int | None = None) -> RunState:
    return RunState(
        run_id=run_id,
        workflow="wf",
        status=status,
        input_json=canonical_json(INPUT),
        seq=3,
        started_at_ms=updated_at_ms - 100,
        updated_at_ms=updated_at_ms,
        steps=[
            StepState(name="a", status=StepStatus.WAITING if due_at_ms else StepStatus.SUCCEEDED, due_at_ms=due_at_ms)
        ],
    )


def put(table: RunTable, *states: RunState, offset: int = 1) -> None:
    changes = Changes()
    for s in states:
        changes.state(s, to_bytes(s))
    table.apply(0, changes, offset)


@pytest.fixture
def table(tmp_path: Path) -> RunTable:
    t = RunTable(tmp_path / "db", "ns.orchestrator.runs-changelog")
    yield t  # type: ignore[misc]
    t.close()


SETTINGS = Settings(run_retention_s=10, expired_marker_s=20)


def test_only_finished_runs_past_retention_expire(table: RunTable) -> None:
    put(
        table,
        state("done-old", RunStatus.COMPLETED, 1_000),
        state("failed-old", RunStatus.COMPENSATED, 2_000),
        state("done-new", RunStatus.COMPLETED, 9_000),
        state("running-old", RunStatus.RUNNING, 500),
        state("waiting-old", RunStatus.RUNNING, 500, due_at_ms=99_000),
        state("compensating-old", RunStatus.COMPENSATING, 500),
    )
    checkpoint, full = retention.sweep(SETTINGS, table, {0}, now_ms=15_000)  # expires what ended before 5,000
    assert not full
    assert set(checkpoint.markers) == {(0, "done-old"), (0, "failed-old")}
    assert not checkpoint.forgotten
    marker = checkpoint.markers[(0, "done-old")]
    assert (marker.status, marker.ended_at_ms, marker.expired_at_ms) == ("COMPLETED", 1_000, 15_000)
    # Nothing expires in a partition this orchestrator was not given.
    assert retention.sweep(SETTINGS, table, {1}, now_ms=15_000)[0].markers == {}


def test_a_marker_replaces_the_state_then_a_tombstone_removes_both(table: RunTable) -> None:
    put(table, state("r1", RunStatus.COMPLETED, 1_000), state("r2", RunStatus.COMPLETED, 1_000))
    marker = retention.marker_of(table.get(0, "r1"), now_ms=12_000)  # type: ignore[arg-type]
    changes = Changes()
    changes.marker(marker, to_bytes(marker))
    table.apply(0, changes, 2)
    assert table.get(0, "r1") is None and table.expired(0, "r1") == marker
    assert table.ended_before(0, 10**12, 10) == ["r2"], "an expired run leaves the finished-runs index"
    assert table.counts() == {"states": 1, "markers": 1}
    assert table.expired_before(0, 12_000, 10) == [] and table.expired_before(0, 12_001, 10) == ["r1"]
    gone = Changes()
    gone.forget("r1")
    table.apply(0, gone, 3)
    assert table.expired(0, "r1") is None and table.get(0, "r1") is None
    assert table.expired_before(0, 10**12, 10) == []
    assert table.counts() == {"states": 1, "markers": 0}
    assert table.applied_offset(0) == 3


def test_a_redriven_run_leaves_the_finished_index_and_a_new_run_clears_an_old_marker(table: RunTable) -> None:
    put(table, state("r", RunStatus.FAILED, 1_000))
    assert table.ended_before(0, 2_000, 10) == ["r"]
    put(table, state("r", RunStatus.RUNNING, 3_000))  # redriven: in flight again
    assert table.ended_before(0, 10**12, 10) == [] and table.live(0) == {"r"}
    put(table, state("r", RunStatus.COMPLETED, 4_000))
    assert table.ended_before(0, 4_000, 10) == [] and table.ended_before(0, 4_001, 10) == ["r"]
    marker = retention.marker_of(state("r", RunStatus.COMPLETED, 4_000), 20_000)
    changes = Changes()
    changes.marker(marker, to_bytes(marker))
    table.apply(0, changes, 5)
    put(table, state("r", RunStatus.RUNNING, 90_000))  # a state after the marker (after a tombstone, in the log)
    assert table.expired(0, "r") is None and table.expired_before(0, 10**12, 10) == []


def test_the_last_change_in_a_stretch_of_changelog_wins() -> None:
    changes = Changes()
    s = state("r", RunStatus.COMPLETED, 1_000)
    marker = retention.marker_of(s, 2_000)
    changes.state(s, to_bytes(s))
    changes.marker(marker, to_bytes(marker))
    changes.forget("r")
    assert (changes.states, changes.markers, changes.forgotten, changes.ended) == ({}, {}, {"r"}, {})
    changes.state(s, to_bytes(s))
    assert set(changes.states) == {"r"} and changes.ended == {"r": 1_000} and not changes.forgotten
    assert len(changes) == 1


def test_markers_are_forgotten_after_their_period(table: RunTable) -> None:
    put(table, state("r", RunStatus.COMPLETED, 1_000))
    checkpoint, _ = retention.sweep(SETTINGS, table, {0}, now_ms=11_001)
    changes = Changes()
    for (_, _run), m in checkpoint.markers.items():
        changes.marker(m, to_bytes(m))
    table.apply(0, changes, 2)
    assert retention.sweep(SETTINGS, table, {0}, now_ms=31_001)[0].forgotten == set()
    assert retention.sweep(SETTINGS, table, {0}, now_ms=31_002)[0].forgotten == {(0, "r")}


def test_a_sweep_is_bounded_and_says_so(table: RunTable) -> None:
    put(table, *(state(f"r{i:05d}", RunStatus.COMPLETED, 1_000 + i) for i in range(retention.SWEEP_LIMIT + 5)))
    checkpoint, full = retention.sweep(SETTINGS, table, {0}, now_ms=10**9)
    assert full and len(checkpoint.markers) == retention.SWEEP_LIMIT
    assert (0, "r00000") in checkpoint.markers, "oldest first"


def test_a_resubmission_is_a_duplicate_only_with_the_same_input() -> None:
    marker = retention.marker_of(state("r", RunStatus.COMPLETED, 1_000), 2_000)
    assert retention.resubmission(marker, {"amount": 10, "claim_id": "CLM-1"}) == "duplicate"
    assert retention.resubmission(marker, {**INPUT, "amount": 11}) == "conflict"
    # The marker is far smaller than the state it replaces, and is what the changelog keeps.
    assert from_bytes(to_bytes(marker), ExpiredRun) == marker
    assert "expired: it ended COMPLETED" in retention.describe(marker)
    assert "new run" in retention.describe("forgotten", "r")


def test_sweeps_come_often_enough_for_the_retention() -> None:
    assert retention.sweep_every_s(Settings(run_retention_s=1, expired_marker_s=2)) == 0.2
    assert retention.sweep_every_s(Settings()) == 60.0
    assert not retention.expires(Settings(run_retention_s=0))


def test_topics_get_the_retention_of_their_role() -> None:
    s = Settings(namespace="ns", short_topic_retention_s=DAY_S, long_topic_retention_s=30 * DAY_S)
    t = Topics("ns")
    day, month = str(86_400_000), str(30 * 86_400_000)
    assert topic_config(s, t.run_changelog)["cleanup.policy"] == "compact"
    assert topic_config(s, t.owners)["cleanup.policy"] == "compact"
    assert "retention.ms" not in topic_config(s, t.run_changelog)
    for short in (t.commands, t.results, t.control):
        assert topic_config(s, short) == {"cleanup.policy": "delete", "retention.ms": day}
    for long in (t.journal, t.dead_letters, t.name("decisions"), t.name("fnol.reported")):
        assert topic_config(s, long) == {"cleanup.policy": "delete", "retention.ms": month}


def test_retention_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_RUN_RETENTION_S", "1.5")
    monkeypatch.setenv("DURABLE_EXPIRED_MARKER_S", "3")
    s = Settings.from_env()
    assert (s.run_retention_s, s.expired_marker_s) == (1.5, 3.0)
    assert Settings().run_retention_s == 7 * DAY_S
