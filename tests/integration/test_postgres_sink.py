"""`durable sink postgres` against the real broker and the local PostgreSQL.

Decisions are written onto the decisions topic the way the orchestrator writes
them (keyed by run, on the run's partition, with the ``id`` header), redriven
runs' second decisions and stale re-deliveries included, so every case the
sink must handle is on the topic in a known order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from schemas import to_bytes
from schemas.fnol.models import RoutedDecision
from schemas.models import DeadLetter
from streams import deadletters as dlq
from streams import signed_outputs
from streams.config import Settings
from streams.topics import Topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import read_topic
from tests.helpers import decisions, produce, sample_claims
from tests.sink_helpers import (
    ADMIN_DSN,
    ROOT,
    SinkProcesses,
    decision,
    fresh_database,
    query,
    signed,
    write_decisions,
)

pytestmark = pytest.mark.integration

T0 = 1_795_820_000_000


@pytest.fixture
def dsn() -> Iterator[str]:
    yield from fresh_database()


@pytest.fixture
def sinks(settings: Settings, dsn: str, tmp_path: Path) -> Iterator[SinkProcesses]:
    procs = SinkProcesses(settings, dsn, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def runs(n: int, prefix: str = "CLM") -> list[str]:
    return [f"fnol:acme:{prefix}-{i:06d}" for i in range(n)]


def stored_count(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM decisions")[0][0]) if _has_tables(dsn) else 0


def _has_tables(dsn: str) -> bool:
    return bool(query(dsn, "SELECT to_regclass('public.run_decisions') IS NOT NULL")[0][0])


def sink_dead_letters(settings: Settings) -> list[dict[str, object]]:
    letters = read_topic(settings, Topics(settings.namespace).dead_letters)
    return [d for d in letters if str(d.get("reason", "")).startswith("sink postgres:")]


def latest_by_run(dsn: str) -> dict[str, str]:
    return dict(query(dsn, "SELECT run_id, decision_id FROM run_decisions"))  # type: ignore[arg-type]


def expected_latest(decisions: list[RoutedDecision]) -> dict[str, str]:
    best: dict[str, RoutedDecision] = {}
    for d in decisions:
        have = best.get(d.run_id)
        if have is None or (have.decided_at_ms, have.decision_id) < (d.decided_at_ms, d.decision_id):
            best[d.run_id] = d
    return {run: d.decision_id for run, d in best.items()}


def test_every_decision_lands_once_latest_per_run_wins_and_bad_records_become_dead_letters(
    settings: Settings, dsn: str, sinks: SinkProcesses
) -> None:
    ids = runs(200)
    first = [decision(run, 1, T0 + i) for i, run in enumerate(ids)]
    redriven = [decision(run, 2, T0 + 100_000 + i, "REVIEW") for i, run in enumerate(ids[:20])]
    # The first decisions of five redriven runs written again after their newer ones (a producer's retry,
    # a re-processed tail): they must not move those runs back.
    stale = first[:5]
    unknown_schema = b"\xc3\x01" + b"\x00" * 8 + b"body"
    wrong_record = to_bytes(
        DeadLetter(
            dead_letter_id="x",
            reason="r",
            error_type="E",
            source_topic="t",
            source_partition=0,
            source_offset=0,
            payload=b"",
            at_ms=T0,
        )
    )
    nul_text = decision("fnol:acme:NUL-1", 1, T0).model_copy(update={"queue": "bad\x00queue"})
    # A decision no worker signed, and a signed one whose reserve was edited afterwards: never rows.
    unsigned = to_bytes(decision("fnol:acme:UNSIGNED-1", 1, T0))
    genuine = signed(decision("fnol:acme:EDITED-1", 1, T0))
    edited = signed(decision("fnol:acme:EDITED-1", 1, T0).model_copy(update={"reserve": 99_999.0}))
    edited = edited[: -signed_outputs.SIGNATURE_HEX] + genuine[-signed_outputs.SIGNATURE_HEX :]
    write_decisions(
        settings,
        [*first[:100], b"not avro at all", unknown_schema, *first[100:], wrong_record, *redriven, *stale, nul_text],
    )
    write_decisions(settings, [unsigned, edited])

    sink = sinks.start("sink-a")
    everything = first + redriven
    sinks.wait(lambda: stored_count(dsn) == len(everything) or None, 120, f"{len(everything)} decisions in PostgreSQL")
    letters = sinks.wait(
        lambda: found if len(found := sink_dead_letters(settings)) >= 6 else None,
        60,
        "a dead letter for each of the six bad records",
    )

    assert query(dsn, "SELECT count(*), count(DISTINCT decision_id) FROM decisions")[0] == (220, 220)
    assert latest_by_run(dsn) == expected_latest(everything), "each run's latest decision is its newest one"
    stored = dict(
        query(dsn, "SELECT decision_id, status FROM decisions WHERE run_id = %s ORDER BY decided_at_ms", ids[0])
    )
    assert stored == {f"{ids[0]}/decision/1": "ROUTED", f"{ids[0]}/decision/2": "REVIEW"}, "both decisions are kept"
    reasons = sorted(str(d["error_type"]) for d in letters)
    assert reasons == [
        "DecodeError",
        "DecodeError",
        "InvalidSignature",
        "InvalidSignature",
        "InvalidText",
        "UnknownSchemaError",
    ], letters
    assert all(d["kind"] == "record" and d["source_topic"] == f"{settings.namespace}.decisions" for d in letters)

    # The bad records stopped nothing: later decisions on the same partitions still land.
    later = [decision(run, 1, T0 + 200_000 + i) for i, run in enumerate(runs(10, "LATE"))]
    write_decisions(settings, [b"\x00garbage", *later])
    sinks.wait(lambda: stored_count(dsn) == 230 or None, 60, "decisions written after the bad records")
    assert sink.poll() is None, "the sink is still running"

    # `durable sinks status`: the group caught up (committed = end on every partition) and its dead letters.
    def caught_up() -> str | None:
        shown = subprocess.run(
            [sys.executable, "-m", "streams.cli", "sinks", "status"],
            cwd=ROOT,
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "DURABLE_NAMESPACE": settings.namespace,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout if "lag 0  dead letters 7" in shown.stdout else None

    printed = sinks.wait(caught_up, 60, "the sink group's committed offsets reaching the end", every_s=1.0)
    assert f"group {settings.namespace}.sink.postgres" in printed and printed.count("partition ") == 8, printed


def test_sigkilled_sink_restarts_and_reapplies_only_the_uncommitted_tail_harmlessly(
    settings: Settings, dsn: str, sinks: SinkProcesses
) -> None:
    ids = runs(300)
    waves = [
        [decision(run, 1, T0 + i) for i, run in enumerate(ids[:100])],
        [decision(run, 1, T0 + i) for i, run in enumerate(ids[100:200], start=100)],
        [decision(run, 2, T0 + 500_000 + i, "REVIEW") for i, run in enumerate(ids[:60])],  # redriven runs
        [decision(run, 1, T0 + i) for i, run in enumerate(ids[200:], start=200)] + [decision(ids[0], 1, T0)],
    ]
    written: list[RoutedDecision] = []
    for kill in range(3):
        write_decisions(settings, list(waves[kill]))
        written += waves[kill]
        sink = sinks.start(f"sink-{kill}")
        before = stored_count(dsn)
        # SIGKILL mid-stream: once it stored some of this wave, before it could have stored all of it.
        sinks.wait(
            lambda before=before: stored_count(dsn) > before or None, 120, f"the sink storing wave {kill}", every_s=0.05
        )
        sinks.kill(sink)
    write_decisions(settings, list(waves[3]))
    written += waves[3][:-1]  # the last one re-sends run 0's first decision: a stale duplicate
    sinks.start("sink-final")
    sinks.wait(
        lambda: stored_count(dsn) == len(written) or None, 180, f"all {len(written)} decisions after three SIGKILLs"
    )

    assert query(dsn, "SELECT count(*), count(DISTINCT decision_id) FROM decisions")[0] == (len(written),) * 2
    assert latest_by_run(dsn) == expected_latest(written), "each run's latest survived the kills"
    reapplied = int(query(dsn, "SELECT coalesce(sum(times_received - 1), 0) FROM decisions")[0][0])
    print(f"decisions re-applied after SIGKILLs (uncommitted tails + the stale duplicate): {reapplied}")
    assert sink_dead_letters(settings) == [], "no good decision was dead-lettered"


def test_migrations_apply_once_and_refuse_an_edited_file(dsn: str, tmp_path: Path) -> None:
    from connectors.sinks.postgres.migrate import MIGRATIONS_DIR, MigrationError, migrate

    assert migrate(dsn) == [1, 2]
    assert migrate(dsn) == [], "a second start applies nothing"
    edited = tmp_path / "migrations"
    edited.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (edited / path.name).write_text(path.read_text())
    (edited / "0002_run_decisions.sql").write_text(
        "-- edited\n" + (MIGRATIONS_DIR / "0002_run_decisions.sql").read_text()
    )
    with pytest.raises(MigrationError, match="0002_run_decisions was edited"):
        migrate(dsn, edited)
    (edited / "0002_run_decisions.sql").write_text((MIGRATIONS_DIR / "0002_run_decisions.sql").read_text())
    (edited / "0003_index.sql").write_text("CREATE INDEX decisions_by_tenant ON decisions (tenant_id);")
    assert migrate(dsn, edited) == [3], "a new file is applied on the next start"


def test_a_workers_decisions_and_a_redriven_runs_newer_one_land_in_postgres(
    settings: Settings, dsn: str, sinks: SinkProcesses
) -> None:
    """End to end: FNOL claims through a real worker, the sink beside it, then two dead-lettered runs redriven."""
    claims = sample_claims()
    worker = Worker(settings, load_workflows(["processors.fnol.workflow:FNOL"])).start()
    try:
        produce(settings, claims)
        sinks.start("sink-e2e")
        sinks.wait(lambda: stored_count(dsn) == len(claims) or worker.failed, 120, "every claim's decision stored")
        assert worker.failed is None
        on_topic = {d["decision_id"]: d for d in decisions(settings)}
        rows = query(
            dsn,
            "SELECT decision_id, run_id, claim_id, tenant_id, status, queue, severity, reserve, currency,"
            " documents_requested, reasons, decided_at_ms FROM decisions",
        )
        fields = (
            "decision_id",
            "run_id",
            "claim_id",
            "tenant_id",
            "status",
            "queue",
            "severity",
            "reserve",
            "currency",
            "documents_requested",
            "reasons",
            "decided_at_ms",
        )
        for row in rows:
            assert dict(zip(fields, row, strict=True)) == {f: on_topic[row[0]][f] for f in fields}, (
                "every field as written"
            )

        # The two claims whose documents could not be requested were dead-lettered and paused (ON_HOLD): redrive
        # them; they pause again (the claimants still left no contact details), each with a new decision.
        letters = [e.letter for e in dlq.letters(settings) if e.letter.kind == "step"]
        assert {letter.run_id for letter in letters} == {
            c.run_id for c in claims if c.record["claim_id"] in ("CLM-100005", "CLM-100043")
        }
        first = latest_by_run(dsn)
        dlq.request_redrives(settings, [dlq.control_for(letter, "test") for letter in letters])
        sinks.wait(
            lambda: stored_count(dsn) == len(claims) + len(letters) or worker.failed,
            120,
            "the redriven runs' new decisions stored",
        )
        latest = latest_by_run(dsn)
        for letter in letters:
            assert letter.run_id is not None
            assert latest[letter.run_id] != first[letter.run_id], "a redriven run's new decision replaces the old"
        assert {r: d for r, d in latest.items() if r not in {x.run_id for x in letters}} == {
            r: d for r, d in first.items() if r not in {x.run_id for x in letters}
        }
        assert latest == expected_latest(
            [
                RoutedDecision.model_validate({k: v for k, v in d.items() if not k.startswith("_")})
                for d in decisions(settings)
            ]
        )
    finally:
        worker.stop()
        worker.join(20)


def test_two_sinks_share_the_partitions_and_one_takes_over_when_the_other_is_killed(
    settings: Settings, dsn: str, sinks: SinkProcesses
) -> None:
    sinks.start("sink-a")
    sinks.start("sink-b")
    written: list[RoutedDecision] = []

    def stored_by() -> dict[str, int]:
        if not _has_tables(dsn):
            return {}
        return dict(query(dsn, "SELECT stored_by, count(*) FROM decisions GROUP BY stored_by"))  # type: ignore[arg-type]

    def both_storing() -> dict[str, int] | None:
        # New decisions on every partition keep arriving until both sinks have stored some: both hold partitions.
        wave = [decision(run, 1, T0 + len(written) + i) for i, run in enumerate(runs(8, f"W{len(written)}"))]
        write_decisions(settings, list(wave))
        written.extend(wave)
        by = stored_by()
        return by if {"sink-a", "sink-b"} <= set(by) else None

    sinks.wait(both_storing, 120, "both sinks storing decisions (the group split the partitions)", every_s=1.0)
    sinks.kill(sinks.procs[0])
    sinks.wait(lambda: stored_count(dsn) == len(written) or None, 60, "the decisions written before the kill")
    before = stored_by()
    after = [decision(run, 1, T0 + 900_000 + i) for i, run in enumerate(runs(100, "AFTER"))]
    write_decisions(settings, list(after))
    sinks.wait(
        lambda: stored_count(dsn) == len(written) + len(after) or None, 90, "sink-b taking over sink-a's partitions"
    )
    now = stored_by()
    assert now["sink-a"] == before["sink-a"] and now["sink-b"] == before["sink-b"] + len(after), (before, now)
    assert len({d.run_id for d in after} & set(latest_by_run(dsn))) == len(after)


def test_while_the_database_is_unreachable_the_sink_retries_and_skips_nothing(
    settings: Settings, dsn: str, sinks: SinkProcesses
) -> None:
    sink = sinks.start("sink-outage")
    first = [decision(run, 1, T0 + i) for i, run in enumerate(runs(40, "UP"))]
    write_decisions(settings, list(first))
    sinks.wait(lambda: stored_count(dsn) == len(first) or None, 120, "the first decisions stored")

    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'.encode())
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        during = [decision(run, 1, T0 + 1000 + i) for i, run in enumerate(runs(40, "DOWN"))]
        write_decisions(settings, list(during))
        sinks.wait(lambda: "not stored" in sinks.log("sink-outage") or None, 60, "the sink retrying its writes")
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())

    sinks.wait(lambda: stored_count(dsn) == len(first) + len(during) or None, 120, "every decision after the outage")
    assert sink.poll() is None, "the outage did not stop the sink"
    assert sink_dead_letters(settings) == [], "a database outage dead-letters nothing"


def test_a_retracted_decision_becomes_its_runs_latest(settings: Settings, dsn: str, sinks: SinkProcesses) -> None:
    """`durable runs rollback` writes a RETRACTED decision after the run's first: run_decisions points at it."""
    ids = runs(3, prefix="RTR")
    first = [decision(run, 1, T0 + i) for i, run in enumerate(ids)]
    retracted = decision(ids[0], 2, T0 + 50_000, "RETRACTED")
    write_decisions(settings, [*first, retracted])
    sinks.start("sink-retract")
    sinks.wait(lambda: stored_count(dsn) == 4, 60, "every decision stored")
    latest = latest_by_run(dsn)
    assert latest[ids[0]] == retracted.decision_id and latest[ids[1]] == first[1].decision_id
    [(status,)] = query(
        dsn, "SELECT d.status FROM run_decisions r JOIN decisions d USING (decision_id) WHERE r.run_id = %s", ids[0]
    )
    assert status == "RETRACTED"
