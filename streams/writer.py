"""One place to produce records and know that the broker acknowledged them.

Every producer of the runtime writes through a :class:`Writer`: the
orchestrator's checkpoint, executors' results, the CLI and the sandbox's
copies, the span exporter. ``send`` queues a record, waiting for room when
librdkafka's local queue is full; ``flush`` waits until every queued record is
acknowledged and raises :class:`DeliveryFailed` naming the first failure, so
nothing after a flush runs on a write that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.config import Settings
from streams.kafka import producer

Headers = list[tuple[str, str | bytes | None]]
OnDelivery = Callable[[KafkaError | None, Message], None]


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge every record written since the last flush."""


class Writer:
    """An idempotent producer that counts what was acknowledged and what was not."""

    def __init__(self, settings: Settings, **config: Any) -> None:
        self._client: Producer | None = producer(settings, **config)
        self._failures: list[str] = []
        self.sent = 0

    @property
    def _producer(self) -> Producer:
        if self._client is None:
            raise RuntimeError("this writer is closed")
        return self._client

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: str | bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        """Queue one record (``value`` None: a tombstone); ``on_delivery`` is told its outcome at ``poll``/``flush``."""

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            if on_delivery is not None:
                on_delivery(err, msg)

        args: dict[str, Any] = {"value": value, "key": key, "headers": headers or [], "on_delivery": delivered}
        if partition is not None:
            args["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **args)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
        self.sent += 1

    def poll(self, timeout_s: float = 0) -> None:
        """Serve delivery reports of records already acknowledged (or failed)."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record's acknowledgement; :class:`DeliveryFailed` if any failed or is still queued."""
        left = self._producer.flush() if timeout_s is None else self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if failures:
            raise DeliveryFailed(f"{len(failures)} write(s) not acknowledged, first: {failures[0]}")
        if left:
            raise DeliveryFailed(f"{left} write(s) still unacknowledged after {timeout_s} s")

    def close(self, timeout_s: float = 10) -> None:
        """Flush what can be flushed in ``timeout_s`` and destroy the client now (not when the broker may be gone)."""
        if self._client is not None:
            self._client.flush(timeout_s)
            self._client = None
        self._failures = []
