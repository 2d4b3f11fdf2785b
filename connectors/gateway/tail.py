"""The journal, live: one reader thread follows the namespace's run journal from the gateway's start.

Requests that wait for a run (``Prefer: wait``, the SSE event stream)
subscribe to its run id and get each of its journal events as it is
written; the thread hands them to the event loop. Older events come from
the journal itself (:func:`streams.journal.run_journal`), so a subscriber
reads the history after subscribing and drops live events it already has.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import TopicPartition

from schemas import DecodeError, from_bytes
from schemas.models import JournalEvent
from streams import wall
from streams.config import Settings
from streams.kafka import reader, take
from streams.topics import Topics, ensure_topics

log = logging.getLogger(__name__)
FETCH_WAIT_MS = 10


class JournalTail:
    """Follows the journal; :meth:`subscribe` gives a queue of one run's events from now on."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        observe: Callable[[JournalEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = Topics(settings.namespace).journal
        self._loop = loop
        self._observe = observe  # every event, in the tail's thread (the metrics count them)
        self._subscribers: dict[str, set[asyncio.Queue[JournalEvent]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started = threading.Event()
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-journal", daemon=True)
        self._thread.start()

    def subscribe(self, run_id: str) -> asyncio.Queue[JournalEvent]:
        queue: asyncio.Queue[JournalEvent] = asyncio.Queue()
        with self._lock:
            self._subscribers[run_id].add(queue)
        return queue

    def unsubscribe(self, run_id: str, queue: asyncio.Queue[JournalEvent]) -> None:
        with self._lock:
            queues = self._subscribers.get(run_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[run_id]

    def _run(self) -> None:
        try:
            ensure_topics(self.settings, [self.topic])
            # A short fetch wait (at least what the broker's wall needs): a decision is answered when it is
            # journaled, not up to a default fetch wait later.
            c = reader(self.settings, **{"fetch.wait.max.ms": wall.fetch_wait_ms(self.settings, FETCH_WAIT_MS, [self.topic])})
        except Exception as exc:  # readyz reports it; the API answers 503 for what needs the tail
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("journal tail did not start: %s", self.failed)
            return
        try:
            # Explicit end offsets, not OFFSET_END: that is resolved at the first fetch, and a run's first
            # events written before it would be missed by a request that subscribed before producing.
            parts = [TopicPartition(self.topic, p) for p in range(self.settings.partitions)]
            starts = [
                TopicPartition(self.topic, tp.partition, c.get_watermark_offsets(tp, timeout=10)[1]) for tp in parts
            ]
            c.assign(starts)
            self.started.set()
            while not self._stop.is_set():
                for msg in take(c, 500, 0.1, slice_s=0.01):
                    if msg.error():
                        continue
                    try:
                        event = from_bytes(msg.value() or b"", JournalEvent)
                    except DecodeError:
                        continue
                    if self._observe is not None:
                        self._observe(event)
                    with self._lock:
                        queues = list(self._subscribers.get(event.run_id, ()))
                    for queue in queues:
                        self._loop.call_soon_threadsafe(queue.put_nowait, event)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("journal tail stopped: %s", self.failed)
        finally:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
