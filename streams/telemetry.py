"""Traces and metrics of runs: OpenTelemetry spans parented across Kafka, kept on Kafka, sent by OTLP.

One trace per run. Its id and the run span's id are derived from the run id
(and the redrive generation), so the orchestrator can name the run span as
the parent of every step command before the run span itself exists (it is
recorded when the run ends, with the run's start and end). The parent travels
in each command's W3C ``traceparent`` header; the executor continues the
trace from that header, and puts its step span's ``traceparent`` on the
result. Outputs carry the run span's, so downstream consumers can continue
the trace too.

Exporters: every span goes to the namespace's traces topic (keyed by run id:
what ``durable trace`` reads), and to an OTLP/HTTP collector when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set. Metrics
(step latency, retries, dead letters, runs by outcome) go to OTLP when an
endpoint is set, or to any reader passed in (tests).

No span of a run is dropped on its way to the traces topic: the
:class:`KafkaSpanWriter` hands spans to a writer thread through a bounded
queue and, when the queue is full, the thread that ended the span waits for
room (back-pressure on the orchestrator or executor) instead of dropping it,
as OpenTelemetry's ``BatchSpanProcessor`` does ("Queue full, dropping
Span."). Spans the broker does not acknowledge are counted and logged. The
OTLP exporter, an outside service that may be slow or away, keeps a batch
processor (it must not stall the engine) with a queue sized for bursts
(:data:`OTLP_MAX_QUEUE`): it drops only when the collector falls behind for
that long. A sandbox replay sends nothing to OTLP unless asked
(``otlp=False``; ``durable replay --from ... --export-spans``), so replays do
not inflate production telemetry.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from processors.engine.evaluation import Evaluation
from schemas import to_bytes
from schemas.models import StepResult, TraceSpan
from streams.batchsizes import BOUNDS
from streams.config import Settings
from streams.kafka import partition_for
from streams.topics import Topics, ensure_topics
from streams.writer import Writer

log = logging.getLogger(__name__)

RUN_ID = "durable.run_id"
# Spans waiting for the traces topic: a 1,000-run burst of 5-step sagas ends ~6,000 at once; past this
# many, the thread ending a span waits for the writer (back-pressure), it never drops one.
SPAN_QUEUE = 50_000
SPAN_BATCH = 5_000  # spans per acknowledged write (one flush): few, large batches for the broker
SPAN_LINGER_S = 0.5  # how long the span writer gathers spans before a write
OTLP_MAX_QUEUE = 65_536  # the OTLP batch processor's queue (default 2,048 overflowed under bench/steps.py)
OTLP_MAX_BATCH = 2_048
_PROPAGATOR = TraceContextTextMapPropagator()
_PRESET: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("durable_span_ids", default=None)


def trace_id_of(run_id: str) -> int:
    """A run's trace id: 128 bits of sha256, the same wherever it is computed."""
    return int.from_bytes(hashlib.sha256(f"durable:trace:{run_id}".encode()).digest()[:16], "big")


def run_span_id_of(run_id: str, generation: int = 0) -> int:
    return int.from_bytes(hashlib.sha256(f"durable:span:{run_id}:{generation}".encode()).digest()[:8], "big")


def traceparent_of(run_id: str, generation: int = 0) -> str:
    """The ``traceparent`` header naming a run's span as parent."""
    return f"00-{trace_id_of(run_id):032x}-{run_span_id_of(run_id, generation):016x}-01"


def context_from_headers(headers: Any) -> Context:
    """The trace context a record's headers carry (``Message.headers()``: pairs or None; empty if none)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    carrier = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in pairs if v is not None}
    return _PROPAGATOR.extract(carrier)


def headers_of(span: trace.Span) -> list[tuple[str, str | bytes | None]]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return [(k, v.encode()) for k, v in carrier.items()]


class _Ids(IdGenerator):
    """Random ids, except for a span created while ids are preset (the run span)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        preset = _PRESET.get()
        return preset[1] if preset else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _PRESET.get()
        return preset[0] if preset else self._random.generate_trace_id()


class KafkaSpanWriter(SpanProcessor):
    """Writes every finished span of a run to the namespace's traces topic, keyed by run id; drops none.

    ``on_end`` queues the span (waiting for room when ``max_queued`` are
    already waiting); a thread writes them in batches of up to ``batch``, one
    acknowledged flush per batch. ``written`` and ``failed`` count spans the
    broker acknowledged or refused; a refusal is logged with its reason.
    """

    def __init__(self, settings: Settings, max_queued: int = SPAN_QUEUE, batch: int = SPAN_BATCH) -> None:
        self.settings = settings
        self.topic = Topics(settings.namespace).traces
        ensure_topics(settings, [self.topic])
        self._writer = Writer(settings)
        self._batch = batch
        self._queue: queue.Queue[ReadableSpan | None] = queue.Queue(maxsize=max_queued)
        self._closed = False
        self.written = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="span-writer", daemon=True)
        self._thread.start()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        """Nothing: spans are written when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a run's finished span for the traces topic (waits for room rather than dropping it)."""
        if self._closed or not isinstance((span.attributes or {}).get(RUN_ID), str):
            return
        self._queue.put(span)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Gather for a moment: spans are read by people, not by the engine, and every write is a record
            # batch on the embedded broker (streams.wall), so fewer, larger writes.
            deadline = time.monotonic() + SPAN_LINGER_S
            while len(batch) < self._batch and batch[-1] is not None:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            spans = [s for s in batch if s is not None]
            try:
                self._write(spans)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(spans) < len(batch):  # the shutdown marker: everything before it is written
                return

    def _write(self, spans: list[ReadableSpan]) -> None:
        sent = 0
        try:
            for span in spans:
                record = to_record(span)
                if record is None:
                    continue
                partition = partition_for(record.run_id, self.settings.partitions)
                self._writer.send(self.topic, to_bytes(record), key=record.run_id, partition=partition)
                sent += 1
            self._writer.flush(30)
            self.written += sent
        except Exception as exc:  # a span we cannot write must not stop the next ones: count it, say so
            self.failed += sent
            log.error("%d span(s) not written to %s: %s", sent, self.topic, exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every span queued so far is written (or refused); False if ``timeout_millis`` passed first."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout_millis / 1000)

    def shutdown(self) -> None:
        """Write what is queued, then stop the thread and close the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(60)
        self._writer.close()


def to_record(span: ReadableSpan) -> TraceSpan | None:
    """A span as a TraceSpan record; None for a span that belongs to no run."""
    attrs = dict(span.attributes or {})
    run_id = attrs.get(RUN_ID)
    ctx = span.context
    if not isinstance(run_id, str) or ctx is None:
        return None
    parent = span.parent
    return TraceSpan(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        run_id=run_id,
        start_unix_nano=span.start_time or 0,
        end_unix_nano=span.end_time or 0,
        status=span.status.status_code.name,
        status_message=span.status.description,
        attributes_json=json.dumps({k: _plain(v) for k, v in attrs.items()}, sort_keys=True),
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def usage_of(result: StepResult) -> dict[str, Any]:
    """Tokens, cost and models of an attempt, from the model calls it recorded."""
    tokens_in = tokens_out = 0
    cost = 0.0
    models: list[str] = []
    for call in json.loads(result.recorded_json or "[]"):
        if call.get("call") != "model":
            continue
        response = call.get("response", {})
        tokens_in += int(response.get("tokens_in", 0))
        tokens_out += int(response.get("tokens_out", 0))
        cost += float(response.get("cost_usd", 0.0))
        if response.get("model") and response["model"] not in models:
            models.append(str(response["model"]))
    return {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": round(cost, 6), "models": models}


class Telemetry:
    """A worker's tracer and meters, bound to one namespace."""

    def __init__(
        self,
        settings: Settings,
        metric_readers: Sequence[MetricReader] = (),
        kafka: bool = True,
        otlp: bool = True,
    ) -> None:
        """``kafka``: write spans to the traces topic; ``otlp``: also export to OTLP when an endpoint is set."""
        resource = Resource.create({"service.name": "durable", "durable.namespace": settings.namespace})
        self.provider = TracerProvider(resource=resource, id_generator=_Ids())
        self.spans: KafkaSpanWriter | None = None
        if kafka:
            self.spans = KafkaSpanWriter(settings)
            self.provider.add_span_processor(self.spans)
        readers = list(metric_readers)
        if otlp and _otlp_configured("TRACES"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=OTLP_MAX_QUEUE, max_export_batch_size=OTLP_MAX_BATCH)
            )
        if otlp and _otlp_configured("METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self.meters = MeterProvider(resource=resource, metric_readers=readers)
        self.tracer = self.provider.get_tracer("durable")
        meter = self.meter = self.meters.get_meter("durable")
        self.step_latency = meter.create_histogram("durable.step.latency", unit="ms", description="step attempt latency")
        self.batch_size = meter.create_histogram(
            "durable.orchestrator.batch",
            unit="{record}",
            description="records an orchestrator took in one poll (and applied in one checkpoint)",
            explicit_bucket_boundaries_advisory=[float(b) for b in BOUNDS],
        )
        self.retries = meter.create_counter("durable.step.retries", description="failed attempts waiting to retry")
        self.dead_letters = meter.create_counter("durable.dead_letters", description="records and steps dead-lettered")
        self.runs = meter.create_counter("durable.runs", description="runs ended, by outcome")
        self.blocked = meter.create_up_down_counter(
            "durable.runs.blocked", description="runs (orchestrator) or commands (executor) waiting for a version"
        )

    def step_span(
        self,
        result: StepResult,
        span_name: str,
        parent: Context,
        evaluation: Evaluation | None = None,
    ) -> trace.Span:
        """Record a finished step attempt as a span under ``parent``; returns it (ended).

        ``evaluation``: for a step that judges its run, its verdict (marked on the span).
        """
        usage = usage_of(result)
        attrs: dict[str, Any] = {
            RUN_ID: result.run_id,
            "durable.workflow": result.workflow,
            "durable.step": result.step,
            "durable.action": result.action,
            "durable.attempt": result.attempt,
            "durable.worker": result.worker,
            "durable.latency_ms": result.finished_at_ms - result.started_at_ms,
            "gen_ai.usage.input_tokens": usage["tokens_in"],
            "gen_ai.usage.output_tokens": usage["tokens_out"],
            "durable.cost_usd": usage["cost_usd"],
            "gen_ai.request.model": ",".join(usage["models"]),
        }
        if evaluation is not None:
            attrs["durable.eval.passed"] = evaluation.passed
            attrs["durable.eval.total"] = evaluation.total
            attrs["durable.eval.outcome"] = evaluation.outcome
        span = self.tracer.start_span(
            span_name if result.action == "run" else f"{span_name}.compensate",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=result.started_at_ms * 1_000_000,
        )
        if result.error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{result.error.type}: {result.error.message}"[:500]))
        else:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=result.finished_at_ms * 1_000_000)
        outcome = "ok" if result.error is None else "error"
        self.step_latency.record(
            result.finished_at_ms - result.started_at_ms,
            {"workflow": result.workflow, "step": result.step, "outcome": outcome},
        )
        return span

    def run_span(
        self,
        run_id: str,
        workflow: str,
        generation: int,
        status: str,
        started_at_ms: int,
        ended_at_ms: int,
        received_at_ms: int = 0,
    ) -> None:
        """Record a run that ended as its trace's root span, with the ids its steps already named.

        A run that waited for admission (its input came in a burst) spans from when its input was written,
        with a child ``orchestrator.queued`` for the wait; ``durable.queued_ms`` says how long it was, and
        its latency (the budget's) counts from admission.
        """
        queued_ms = max(0, started_at_ms - received_at_ms) if received_at_ms else 0
        token = _PRESET.set((trace_id_of(run_id), run_span_id_of(run_id, generation)))
        try:
            span = self.tracer.start_span(
                "orchestrator.run",
                context=Context(),  # a root: no parent, whatever is current
                attributes={
                    RUN_ID: run_id,
                    "durable.workflow": workflow,
                    "durable.generation": generation,
                    "durable.status": status,
                    "durable.latency_ms": ended_at_ms - started_at_ms,
                    "durable.queued_ms": queued_ms,
                },
                start_time=(started_at_ms - queued_ms) * 1_000_000,
            )
        finally:
            _PRESET.reset(token)
        if queued_ms:
            queued = self.tracer.start_span(
                "orchestrator.queued",
                context=trace.set_span_in_context(span),
                attributes={RUN_ID: run_id, "durable.workflow": workflow, "durable.queued_ms": queued_ms},
                start_time=received_at_ms * 1_000_000,
            )
            queued.end(end_time=started_at_ms * 1_000_000)
        span.set_status(Status(StatusCode.OK) if status == "COMPLETED" else Status(StatusCode.ERROR, status))
        span.end(end_time=ended_at_ms * 1_000_000)
        self.runs.add(1, {"workflow": workflow, "outcome": status})

    def flush(self) -> None:
        self.provider.force_flush(10_000)
        self.meters.force_flush(10_000)

    def shutdown(self) -> None:
        self.provider.shutdown()
        self.meters.shutdown()


def parent_of_run(run_id: str, generation: int = 0) -> Context:
    """The context whose span is the run's (for steps run inside the orchestrator)."""
    span_context = SpanContext(
        trace_id=trace_id_of(run_id),
        span_id=run_span_id_of(run_id, generation),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def _otlp_configured(signal: str) -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
