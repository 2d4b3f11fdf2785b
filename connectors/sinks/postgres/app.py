"""The PostgreSQL sink's Faust app: read each decision, commit it to the database, then acknowledge it.

Order, per record: (1) decode it; (2) a decision is upserted in its own
database transaction, retried with backoff while the database is unreachable
(the partition waits; nothing is skipped); (3) a record that is no decision,
or whose values the database refuses, becomes a dead letter (kind
``record``, the reason, the source offset) and waiting for the broker's
acknowledgement of it; (4) only then the record is acknowledged to Faust,
whose commits cover acknowledged records only. So committed offsets never
run ahead of the database, a crash re-applies at most the uncommitted tail,
and the upsert makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, cast

import faust

from connectors.sinks.decisions import BadRecord, Decision, Source, dead_letter, read, sink_keyring
from connectors.sinks.faust_app import sink_app
from connectors.sinks.health import SinkMetrics, status
from connectors.sinks.postgres.store import RECORD_ERRORS, DecisionStore
from schemas import to_bytes
from streams.config import Settings
from streams.topics import Topics

SINK = "postgres"
log = logging.getLogger("durable.sink.postgres")

BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 5.0


def decisions_topic(settings: Settings) -> str:
    return Topics(settings.namespace).name("decisions")


class PostgresSink:
    """The sink's state: its app, its store and what it counted (applied, dead-lettered, retried)."""

    def __init__(self, settings: Settings, dsn: str, web_port: int | None = None) -> None:
        self.settings = settings
        self.app = sink_app(settings, SINK, web_port)
        self.store = DecisionStore(dsn, settings.worker_name)
        self.keyring = sink_keyring()  # decisions whose signature fails become dead letters, never rows
        self.counts: Counter[str] = Counter()
        self.metrics = SinkMetrics(settings, SINK)
        self.decisions = self.app.topic(decisions_topic(settings), key_serializer="raw", value_serializer="raw")
        self.dead_letters = self.app.topic(
            Topics(settings.namespace).dead_letters, key_serializer="raw", value_serializer="raw"
        )
        self.app.agent(self.decisions, name=f"{settings.namespace}.sink.postgres.decisions")(self._consume)
        self.app.timer(interval=10.0)(self._report)

    async def _consume(self, stream: faust.StreamT[Any]) -> None:
        await self.store.open()
        manual = cast(faust.Stream[Any], stream).noack()  # acknowledged by hand, after the database commit
        async for event in manual.events():
            message = event.message
            await self.handle(message.value, Source(message.topic, message.partition, message.offset))
            await manual.ack(event)

    async def handle(self, value: bytes | None, source: Source) -> None:
        """Store one record of the decisions topic, or dead-letter it; returns once that is durable."""
        item = read(value, source, self.keyring)
        if isinstance(item, Decision):
            try:
                await self._apply(item)
                self._count("applied")
                return
            except RECORD_ERRORS as exc:
                item = BadRecord(f"the database refused it: {exc}", type(exc).__name__, value or b"", source)
        await self._dead_letter(item)

    async def _apply(self, item: Decision) -> None:
        delay = BACKOFF_START_S
        while True:
            try:
                await self.store.apply(item)
                return
            except RECORD_ERRORS:
                raise
            except Exception as exc:  # the database, not the record: wait for it, never skip the record
                self._count("retried")
                log.warning(
                    "decision at %s:%d:%d not stored (%s: %s); retrying in %.1fs",
                    item.source.topic,
                    item.source.partition,
                    item.source.offset,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)  # backoff while the database is unreachable
                delay = min(delay * 2, BACKOFF_CAP_S)

    async def _dead_letter(self, bad: BadRecord) -> None:
        letter = dead_letter(bad, SINK)
        sent = await self.dead_letters.send(key=letter.dead_letter_id.encode(), value=to_bytes(letter))
        await sent  # the broker acknowledged it before the source record is acknowledged
        self._count("dead_lettered")
        log.warning("dead-lettered %s (%s): %s", letter.dead_letter_id, bad.error_type, bad.reason)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self.metrics.count(outcome)

    async def _report(self) -> None:
        try:
            # The admin client blocks: off the event loop, so the agent keeps consuming meanwhile.
            self.metrics.current_lag = (await asyncio.to_thread(status, self.settings, SINK)).lag
        except Exception as exc:  # health is best effort; the sink goes on without it
            log.warning("lag of the postgres sink not measured: %s: %s", type(exc).__name__, exc)
        log.info("postgres sink: %s, lag %d", dict(self.counts), self.metrics.current_lag)
