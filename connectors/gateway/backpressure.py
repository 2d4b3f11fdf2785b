"""Backpressure: new runs get 503 with ``Retry-After`` while the orchestrator's input lag is over a threshold.

The lag is what the orchestrator's group has not yet committed on the
workflow's input topic, summed over partitions (the same committed-vs-end
reading as ``durable sinks status``). It is measured at most once a second
and the figure shared by every request meanwhile.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, TopicPartition

from streams import offsets
from streams.config import Settings
from streams.kafka import reader
from streams.topics import Topics


class InputLag:
    """The orchestrator's lag on one input topic, cached for ``every_s``."""

    def __init__(self, settings: Settings, topic: str, every_s: float = 1.0) -> None:
        self.settings = settings
        self.topic = topic
        self.group = Topics(settings.namespace).orchestrator_group
        self.every_s = every_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._value = 0
        self._reader: Consumer | None = None

    def _measure(self) -> int:
        committed = offsets.committed(self.settings, self.group)
        if self._reader is None:
            self._reader = reader(self.settings)
        total = 0
        for p in range(self.settings.partitions):
            # The reported high watermark, not a read past it (as offsets.bounds does): a second's staleness
            # does not matter to a threshold, and one request per partition keeps this cheap.
            low, end = self._reader.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)
            done = committed.get((self.topic, p))
            total += max(0, end - (done if done is not None else low))
        return total

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def current(self) -> int:
        """The lag now (blocking: call from a worker thread)."""
        with self._lock:
            if time.monotonic() - self._at >= self.every_s:
                self._value = self._measure()
                self._at = time.monotonic()
            return self._value

    @property
    def last(self) -> int:
        """The last figure measured, without measuring (for metrics)."""
        return self._value
