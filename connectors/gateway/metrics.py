"""``/metrics``: the gateway's OpenTelemetry metrics in Prometheus text.

Request counts and latencies by route, method and status; the
orchestrator's input lag (what backpressure decides on); and the workers'
run counters under the workers' own names and labels (``durable.runs`` by
outcome, ``durable.step.retries``, ``durable.dead_letters`` of steps),
counted from the journal the gateway follows, since the gateway started; and
``durable.gateway.decisions.invalid``, records of runs whose decision failed
its check (:mod:`connectors.gateway.trust`), each counted once. The
workers' step latency histogram and record dead letters stay theirs (OTLP
from their processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from processors.engine.status import AT_REST
from schemas.models import JournalEvent, JournalKind

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics:
    """One meter provider per gateway, read by a Prometheus reader."""

    def __init__(self, lag: Callable[[], int | None]) -> None:
        self._registry = CollectorRegistry()  # its own: two gateways in one process (tests) do not mix
        self._reader = PrometheusMetricReader(registry=self._registry)
        self._provider = MeterProvider(
            resource=Resource.create({"service.name": "durable-gateway"}), metric_readers=[self._reader]
        )
        meter = self._provider.get_meter("durable.gateway")
        self.requests = meter.create_counter("durable.gateway.requests", description="HTTP requests answered")
        self.latency = meter.create_histogram(
            "durable.gateway.request.duration", unit="ms", description="HTTP request latency"
        )
        self.accepted = meter.create_counter("durable.gateway.runs.accepted", description="runs accepted (202/200)")
        self._lag = lag
        self.runs = meter.create_counter("durable.runs", description="runs ended, by outcome (from the journal)")
        self.retries = meter.create_counter("durable.step.retries", description="failed attempts waiting to retry")
        self.dead_letters = meter.create_counter("durable.dead_letters", description="steps dead-lettered")
        self.invalid_decisions = meter.create_counter(
            "durable.gateway.decisions.invalid", description="records whose signature or chain failed, not served"
        )

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            value = self._lag()
            return [] if value is None else [Observation(value)]

        meter.create_observable_gauge(
            "durable.orchestrator.input_lag", callbacks=[observe], description="inputs not yet taken by the orchestrator"
        )

    def observe(self, event: JournalEvent) -> None:
        """Count a journal event as the orchestrator's own meters do (called from the journal tail)."""
        kind = event.kind
        if kind in (JournalKind.STEP_RETRY_WAITING, JournalKind.COMPENSATION_RETRY_WAITING):
            self.retries.add(1, {"workflow": event.workflow, "step": event.step or ""})
        elif kind in (JournalKind.STEP_DEAD_LETTERED, JournalKind.COMPENSATION_DEAD_LETTERED):
            self.dead_letters.add(1, {"kind": "step", "workflow": event.workflow, "step": event.step or ""})
        elif kind in AT_REST:
            self.runs.add(1, {"workflow": event.workflow, "outcome": AT_REST[kind].value})

    def record(self, route: str, method: str, status: int, ms: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.requests.add(1, labels)
        self.latency.record(ms, labels)

    def text(self) -> bytes:
        return generate_latest(self._registry)

    def close(self) -> None:
        self._provider.shutdown()
