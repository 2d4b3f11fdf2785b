"""Sink health: how far each sink's consumer group is behind the end of the decisions topic, and what it did.

:func:`status` is what ``durable sinks status`` prints; :class:`SinkMetrics` is
what a running sink exports as OpenTelemetry metrics (OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, or to readers passed in): records by
outcome (``applied``, ``dead_lettered``, ``retried``) and its lag.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from streams import offsets
from streams.config import Settings
from streams.topics import Topics

SINKS = ("postgres", "webhook")


def group_of(settings: Settings, sink: str) -> str:
    """A sink's consumer group (its Faust app id)."""
    return f"{settings.namespace}.sink.{sink}"


@dataclass(frozen=True)
class PartitionLag:
    """One partition of the decisions topic as a sink's group sees it."""

    partition: int
    committed: int | None  # None: the group committed nothing here yet
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


@dataclass(frozen=True)
class SinkStatus:
    """A sink group's state and its lag on every partition of the decisions topic."""

    sink: str
    group: str
    state: str
    partitions: list[PartitionLag]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def status(settings: Settings, sink: str) -> SinkStatus:
    """The sink group's committed offsets against the ends of the decisions topic (read, not trusted from metadata)."""
    topic = Topics(settings.namespace).name("decisions")
    group = group_of(settings, sink)
    state, _ = offsets.group_activity(settings, group)
    committed = offsets.committed(settings, group)
    rows = [
        PartitionLag(p, committed.get((topic, p)), offsets.bounds(settings, topic, p)[1])
        for p in offsets.partitions_of(settings, topic)
    ]
    return SinkStatus(sink, group, state, rows)


class SinkMetrics:
    """A running sink's meters: records by outcome, and its lag (set by the sink's periodic check)."""

    def __init__(self, settings: Settings, sink: str, readers: Sequence[MetricReader] = ()) -> None:
        resource = Resource.create({"service.name": f"durable-sink-{sink}", "durable.namespace": settings.namespace})
        all_readers = list(readers)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            all_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self.provider = MeterProvider(resource=resource, metric_readers=all_readers)
        self.sink = sink
        self.current_lag = 0
        meter = self.provider.get_meter("durable.sinks")
        self.records = meter.create_counter("durable.sink.records", description="decisions-topic records, by outcome")
        meter.create_observable_gauge(
            "durable.sink.lag",
            callbacks=[self._observe_lag],
            description="records behind the end of the decisions topic",
        )

    def count(self, outcome: str, n: int = 1) -> None:
        self.records.add(n, {"sink": self.sink, "outcome": outcome})

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.current_lag, {"sink": self.sink})]
