"""Backpressure: new runs get 503 with ``Retry-After`` while the orchestrator's input lag is over a threshold.

The lag is what the orchestrator's group has not yet committed on the
workflow's input topic, summed over partitions (committed offsets against
the partitions' ends, as ``durable sinks status`` reads a sink's). A thread
measures it once a second; requests read the last figure and never wait for
a measurement (one takes ~70 ms on the embedded broker).
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, TopicPartition

from streams import offsets
from streams.config import Settings
from streams.kafka import reader
from streams.topics import Topics

log = logging.getLogger(__name__)


class InputLag:
    """The orchestrator's lag on one input topic, measured every ``every_s`` in the background."""

    def __init__(self, settings: Settings, topic: str, every_s: float = 1.0) -> None:
        self.settings = settings
        self.topic = topic
        self.group = Topics(settings.namespace).orchestrator_group
        self.every_s = every_s
        self._value: int | None = None
        self._reader: Consumer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-lag", daemon=True)
        self._thread.start()

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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._value = self._measure()
            except Exception as exc:  # the broker may be away a moment: keep the last figure, say why
                log.warning("input lag not measured: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.every_s)
        if self._reader is not None:
            self._reader.close()

    @property
    def last(self) -> int | None:
        """The last figure measured (None before the first)."""
        return self._value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
