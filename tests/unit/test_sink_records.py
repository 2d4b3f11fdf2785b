"""What a sink makes of each kind of record on the decisions topic (pure: no Kafka, no database)."""

from __future__ import annotations

from connectors.sinks.decisions import BadRecord, Decision, Source, dead_letter, read
from schemas import to_bytes
from schemas.fnol.models import RoutedDecision

SOURCE = Source("main.decisions", 2, 41)


def a_decision(**changes: object) -> RoutedDecision:
    base = RoutedDecision(
        decision_id="fnol:acme:C1/out/1",
        claim_id="C1",
        tenant_id="acme",
        run_id="fnol:acme:C1",
        status="ROUTED",
        queue="standard_claims",
        severity="LOW",
        reserve=100.0,
        currency="GBP",
        decided_at_ms=1,
    )
    return base.model_copy(update=changes)


def test_a_decision_is_read_with_where_it_came_from() -> None:
    item = read(to_bytes(a_decision()), SOURCE)
    assert isinstance(item, Decision)
    assert item.decision == a_decision() and item.source == SOURCE


def test_garbage_empty_unknown_schema_and_other_records_are_bad_records_with_reasons() -> None:
    cases = {
        b"definitely not avro": "bad magic bytes",
        b"": "bad magic bytes",
        b"\xc3\x01" + b"\xff" * 8 + b"x": "unknown schema fingerprint",
        to_bytes(a_decision())[:-3]: "corrupt",
    }
    for payload, reason in cases.items():
        item = read(payload, SOURCE)
        assert isinstance(item, BadRecord) and reason in item.reason, (payload, item)


def test_a_record_of_another_schema_is_refused_by_name() -> None:
    from schemas.models import DeadLetter

    letter = DeadLetter(
        dead_letter_id="x",
        reason="r",
        error_type="E",
        source_topic="t",
        source_partition=0,
        source_offset=0,
        payload=b"",
        at_ms=0,
    )
    item = read(to_bytes(letter), SOURCE)
    assert isinstance(item, BadRecord) and "expected a durable.fnol.RoutedDecision" in item.reason


def test_text_postgresql_cannot_store_is_refused_before_the_database() -> None:
    item = read(to_bytes(a_decision(reasons=["ok", "nul\x00inside"])), SOURCE)
    assert isinstance(item, BadRecord) and item.error_type == "InvalidText"


def test_a_bad_records_dead_letter_is_stable_per_source_record_and_names_the_sink() -> None:
    bad = read(b"junk", SOURCE)
    assert isinstance(bad, BadRecord)
    first, again = dead_letter(bad, "postgres"), dead_letter(bad, "postgres")
    assert first.dead_letter_id == again.dead_letter_id == "main.decisions:2:41"
    assert first.kind == "record" and first.reason.startswith("sink postgres:") and first.payload == b"junk"


def test_a_sink_exports_its_record_counts_and_lag_as_metrics() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from connectors.sinks.health import SinkMetrics
    from streams.config import Settings

    reader = InMemoryMetricReader()
    metrics = SinkMetrics(Settings(namespace="m"), "postgres", readers=[reader])
    metrics.count("applied", 3)
    metrics.count("dead_lettered")
    metrics.current_lag = 7
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (m.name, tuple(sorted(p.attributes.items()))): p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points  # type: ignore[union-attr]
    }
    assert points[("durable.sink.records", (("outcome", "applied"), ("sink", "postgres")))] == 3
    assert points[("durable.sink.records", (("outcome", "dead_lettered"), ("sink", "postgres")))] == 1
    assert points[("durable.sink.lag", (("sink", "postgres"),))] == 7
