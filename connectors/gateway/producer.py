"""The gateway's one input writer: each request awaits its own record's acknowledgement, not a global flush.

Accepted inputs go through :class:`streams.intake.InputWriter` (the topic and
keying rule of ``durable produce``); a thread serves delivery reports and
resolves each request's future on the event loop. Records of concurrent
requests share the producer's batches.
"""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaError, Message

from processors.engine.inputs import Accepted
from processors.engine.workflow import Workflow
from streams.config import Settings
from streams.intake import InputWriter


class InputProducer:
    """Produce accepted inputs; :meth:`send` returns once the broker has acknowledged that one record."""

    def __init__(self, settings: Settings, wf: Workflow) -> None:
        self._writer = InputWriter(settings, wf)
        self.topic = self._writer.topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="gateway-deliveries", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._writer.poll(0.05)

    async def send(self, item: Accepted, timeout_s: float = 30) -> None:
        """Write one input; raises :class:`RuntimeError` if the broker refused it or did not answer in time."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None, msg: Message) -> None:
            def resolve() -> None:
                if done.done():
                    return
                if err is None:
                    done.set_result(None)
                else:
                    done.set_exception(RuntimeError(f"not acknowledged: {err}"))

            loop.call_soon_threadsafe(resolve)

        self._writer.send(item, on_delivery=settle)
        await asyncio.wait_for(done, timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._writer.close()
