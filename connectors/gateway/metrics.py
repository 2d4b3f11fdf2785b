"""``/metrics``: the gateway's OpenTelemetry metrics in Prometheus text.

Request counts and latencies by route, method and status, and the
orchestrator's input lag (what backpressure decides on). The workers' own
metrics (step latency, retries, dead letters, runs by outcome) are theirs:
they export them over OTLP from their processes; a Prometheus scraping the
gateway sees the edge and the queue in front of the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

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

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            value = self._lag()
            return [] if value is None else [Observation(value)]

        meter.create_observable_gauge(
            "durable.orchestrator.input_lag", callbacks=[observe], description="inputs not yet taken by the orchestrator"
        )

    def record(self, route: str, method: str, status: int, ms: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.requests.add(1, labels)
        self.latency.record(ms, labels)

    def text(self) -> bytes:
        return generate_latest(self._registry)

    def close(self) -> None:
        self._provider.shutdown()
