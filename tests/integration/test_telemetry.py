"""Traces and metrics on a real broker: span tree and parentage across Kafka, attributes, OTLP export."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from confluent_kafka import TopicPartition
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from schemas import from_bytes
from schemas.models import StepResult, TraceSpan
from streams import traces
from streams.cli.trace import render
from streams.config import Settings
from streams.kafka import read_to_end, reader
from streams.orchestrator import Orchestrator
from streams.sandbox import replay_window
from streams.telemetry import RUN_ID, KafkaSpanWriter, Telemetry, run_span_id_of, trace_id_of, traceparent_of
from streams.topics import Topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import wait_for
from tests.helpers import journal, outcomes, produce_orders, sample_orders
from tests.workflows import FLAKY, OUTPUT_TOPIC, SLOW


def _metrics(reader_: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader_.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _headers(settings: Settings, topic: str) -> list[tuple[dict[str, str], bytes]]:
    c = reader(settings)
    try:
        out = []
        for msg in read_to_end(c, [TopicPartition(topic, p, 0) for p in range(settings.partitions)]):
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            out.append((headers, msg.value() or b""))
        return out
    finally:
        c.close()


@pytest.fixture
def metrics() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def _run(
    settings: Settings, workflow: str, telemetry: Telemetry, n: int = 1, prefix: str = "T"
) -> tuple[Worker, list[Any]]:
    orders = sample_orders(n, prefix=prefix)
    worker = Worker(settings, load_workflows([f"tests.workflows:{workflow}"]), telemetry=telemetry).start()
    produce_orders(settings, orders)
    wait_for(lambda: len(outcomes(settings)) >= n or worker.failed, 60, "decisions")
    return worker, orders


def test_a_run_is_one_trace_parented_across_kafka(settings: Settings, metrics: InMemoryMetricReader) -> None:
    worker, [order] = _run(settings, "SLOW", Telemetry(settings, metric_readers=[metrics]))
    worker.stop()
    worker.join(20)  # flushes the spans still queued
    run_id = order.run_id
    view = traces.load(settings, run_id, SLOW)
    by_name = {s.name: s for s in view.spans}
    assert set(by_name) == {"orchestrator.run", "a", "b", "c", "d"}
    root = by_name["orchestrator.run"]
    assert root.trace_id == f"{trace_id_of(run_id):032x}" and root.parent_span_id is None
    assert root.span_id == f"{run_span_id_of(run_id):016x}"
    for name in "abcd":
        span = by_name[name]
        assert span.trace_id == root.trace_id and span.parent_span_id == root.span_id
        attrs = json.loads(span.attributes_json)
        for key in (
            "durable.attempt",
            "durable.latency_ms",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "durable.cost_usd",
            "gen_ai.request.model",
        ):
            assert key in attrs, (name, attrs)
        assert root.start_unix_nano <= span.start_unix_nano <= span.end_unix_nano <= root.end_unix_nano
    assert json.loads(root.attributes_json)["durable.status"] == "COMPLETED"

    # The parent travelled in the records: commands name the run span, results name their step's span.
    topics = Topics(settings.namespace)
    commands = _headers(settings, topics.commands)
    assert commands and all(h["traceparent"] == traceparent_of(run_id) for h, _ in commands)
    for headers, value in _headers(settings, topics.results):
        result = from_bytes(value, StepResult)
        span = by_name[result.step]
        assert headers["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    decision_headers = _headers(settings, topics.name(OUTPUT_TOPIC))
    assert [h["traceparent"] for h, _ in decision_headers] == [traceparent_of(run_id)]

    found = _metrics(metrics)
    latency_points = found["durable.step.latency"]
    assert sum(p.count for p in latency_points) == 4
    runs = found["durable.runs"]
    assert [(dict(p.attributes)["outcome"], p.value) for p in runs] == [("COMPLETED", 1)]
    # Every record the orchestrator took (the input, four results) is in one poll's batch, counted once.
    [orchestrator] = [part for part in worker._parts if isinstance(part, Orchestrator)]
    batches = found["durable.orchestrator.batch"]
    assert sum(p.count for p in batches) == orchestrator.batch_sizes.batches
    assert sum(p.sum for p in batches) == orchestrator.batch_sizes.records >= 5


def test_retries_and_dead_letters_are_counted_and_failed_attempts_marked(
    settings: Settings, metrics: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_FAIL_ATTEMPTS", "1")
    worker, orders = _run(settings, "FLAKY", Telemetry(settings, metric_readers=[metrics]), n=2, prefix="M")
    worker.stop()
    worker.join(20)
    found = _metrics(metrics)
    assert sum(p.value for p in found["durable.step.retries"]) == 2
    view = traces.load(settings, orders[0].run_id, FLAKY)
    flaky = sorted((s for s in view.spans if s.name == "flaky"), key=lambda s: s.start_unix_nano)
    assert [s.status for s in flaky] == ["ERROR", "OK"]
    assert "ConnectionError" in (flaky[0].status_message or "")
    table, lines = render(view, FLAKY.describe)
    assert table.row_count == len(view.spans)
    assert "latency" in str(lines[0]) and '"status":"DONE"' in str(lines[-1])


def test_dead_letters_are_counted(settings: Settings, metrics: InMemoryMetricReader) -> None:
    worker, _ = _run(settings, "DECLINES", Telemetry(settings, metric_readers=[metrics]), prefix="DL")
    worker.stop()
    worker.join(20)
    found = _metrics(metrics)
    assert [dict(p.attributes)["kind"] for p in found["durable.dead_letters"]] == ["step"]
    assert [dict(p.attributes)["outcome"] for p in found["durable.runs"]] == ["FAILED"]


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_spans_and_metrics_go_to_the_configured_otlp_endpoint(
    settings: Settings, collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    worker, _ = _run(settings, "SLOW", Telemetry(settings), prefix="O")
    worker.stop()
    worker.join(20)  # shutdown exports what is queued
    paths = {path for path, _ in _Collector.received}
    assert "/v1/traces" in paths and "/v1/metrics" in paths
    traces = b"".join(body for path, body in _Collector.received if path == "/v1/traces")
    assert b"orchestrator.run" in traces and b"durable.run_id" in traces


# ---------------------------------------------------------------- no lost spans (issue 13.5), no replay spans at the exporter


def _spans(settings: Settings) -> list[TraceSpan]:
    topic = Topics(settings.namespace).traces
    return [from_bytes(value, TraceSpan) for _, value in _headers(settings, topic)]


def test_a_full_span_queue_makes_the_ending_thread_wait_and_drops_no_span(settings: Settings) -> None:
    # A queue of 8 for 2,000 spans ended by two threads at once: OpenTelemetry's batch processor would
    # drop nearly all of them ("Queue full, dropping Span."); the span writer makes the threads wait.
    spans = KafkaSpanWriter(settings, max_queued=8, batch=4)
    provider = TracerProvider()
    provider.add_span_processor(spans)
    tracer = provider.get_tracer("test")

    def end_spans(prefix: str) -> None:
        for i in range(1_000):
            tracer.start_span(f"{prefix}{i}", attributes={RUN_ID: f"run-{i % 50}"}).end()

    threads = [threading.Thread(target=end_spans, args=(p,)) for p in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert provider.force_flush(60_000)
    provider.shutdown()
    names = [s.name for s in _spans(settings)]
    assert len(names) == len(set(names)) == 2_000, "every span once on the traces topic"
    assert spans.written == 2_000 and spans.failed == 0


def _exported(received: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The spans an OTLP/HTTP collector received, as attribute dicts with their ``name``."""
    spans = []
    for path, body in received:
        if path != "/v1/traces":
            continue
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attrs = {a.key: MessageToDict(a.value) for a in span.attributes}
                    spans.append({k: next(iter(v.values()), None) for k, v in attrs.items()} | {"name": span.name})
    return spans


def test_every_finished_step_and_run_of_a_burst_has_its_span_on_the_traces_topic_and_at_the_exporter(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, collector: str
) -> None:
    monkeypatch.setenv("TEST_STEP_DELAY_S", "0")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    n = 400  # four steps each: 2,000 spans ended within seconds, beyond the old 2,048-span queue under load
    orders = sample_orders(n, prefix="B")
    worker = Worker(settings, load_workflows(["tests.workflows:SLOW"])).start()
    produce_orders(settings, orders)
    wait_for(lambda: len(outcomes(settings)) >= n or worker.failed, 180, "an outcome for every order of the burst")
    worker.stop()
    worker.join(30)  # the worker's telemetry writes what it still holds
    assert worker.failed is None
    finished = {
        (e["run_id"], e["step"], e["attempt"], "compensate" if "COMPENSATION" in e["kind"] else "run")
        for e in journal(settings)
        if e["kind"] in ("STEP_SUCCEEDED", "STEP_FAILED", "COMPENSATION_SUCCEEDED", "COMPENSATION_FAILED")
    }
    ended = {e["run_id"] for e in journal(settings) if e["kind"] in ("RUN_COMPLETED", "RUN_FAILED", "RUN_COMPENSATED")}
    assert len(finished) == 4 * n and len(ended) == n
    step_spans, run_spans = set(), set()
    for span in _spans(settings):
        attrs = json.loads(span.attributes_json)
        if span.name == "orchestrator.run":
            run_spans.add(span.run_id)
        elif "durable.step" in attrs:  # not orchestrator.queued, the admission wait of a run
            step_spans.add((span.run_id, attrs["durable.step"], attrs["durable.attempt"], attrs["durable.action"]))
    assert not finished - step_spans, f"{len(finished - step_spans)} finished attempts without a span"
    assert not ended - run_spans, f"{len(ended - run_spans)} ended runs without a span"
    exported = _exported(_Collector.received)
    at_exporter = {
        (e[RUN_ID], e["durable.step"], int(e["durable.attempt"]), e["durable.action"])
        for e in exported
        if "durable.step" in e
    }
    assert not finished - at_exporter, f"{len(finished - at_exporter)} finished attempts never reached the exporter"
    assert not ended - {e[RUN_ID] for e in exported if e["name"] == "orchestrator.run"}


def test_a_window_replay_sends_no_span_to_the_otlp_exporter_unless_asked(
    settings: Settings, collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, _ = _run(settings, "SLOW", Telemetry(settings, otlp=False), n=2, prefix="W")
    worker.stop()
    worker.join(20)
    wf = load_workflows(["tests.workflows:SLOW"])[0]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)  # production telemetry is configured
    window = (int(time.time() * 1000) - 600_000, int(time.time() * 1000) + 1)
    quiet = replay_window(settings, wf, *window, f"{settings.namespace}-replay-q", ignore=wf.diff_ignores, timeout_s=60)
    assert quiet.count("same") == 2
    assert not [p for p, _ in _Collector.received if p == "/v1/traces"], "a replay's spans reached the exporter"
    assert _spans(replace(settings, namespace=f"{settings.namespace}-replay-q")), "the sandbox keeps its own trace"
    asked = replay_window(
        settings, wf, *window, f"{settings.namespace}-replay-t", ignore=wf.diff_ignores, timeout_s=60, export_spans=True
    )
    assert asked.count("same") == 2
    assert b"orchestrator.run" in b"".join(body for p, body in _Collector.received if p == "/v1/traces")
