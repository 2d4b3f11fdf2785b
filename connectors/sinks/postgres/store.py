"""The decisions in PostgreSQL: one idempotent transaction per decision (psycopg 3, a connection pool).

A decision is inserted once (its id is the key; a repeat only counts
``times_received``), and its run's row in ``run_decisions`` moves to it only if
it is newer, by ``(decided_at_ms, decision_id)``, than the one there. So
applying a record twice, or an older record after a newer one, changes no
decision: the sink can re-read any tail of the topic after a crash.
"""

from __future__ import annotations

from psycopg import DataError, IntegrityError
from psycopg_pool import AsyncConnectionPool

from connectors.sinks.decisions import Decision

# A record whose values the database refuses: dead-lettered. Any other error (connection lost, database
# down, a missing table) is the sink's, not the record's: the record is retried, never skipped.
RECORD_ERRORS = (DataError, IntegrityError)

_INSERT_DECISION = """
INSERT INTO decisions (
    decision_id, run_id, claim_id, tenant_id, status, queue, severity, reserve, currency,
    documents_requested, reasons, decided_at_ms, source_topic, source_partition, source_offset, stored_by
) VALUES (
    %(decision_id)s, %(run_id)s, %(claim_id)s, %(tenant_id)s, %(status)s, %(queue)s, %(severity)s, %(reserve)s,
    %(currency)s, %(documents_requested)s, %(reasons)s, %(decided_at_ms)s, %(source_topic)s, %(source_partition)s,
    %(source_offset)s, %(stored_by)s
)
ON CONFLICT (decision_id) DO UPDATE SET times_received = decisions.times_received + 1
"""

_UPSERT_LATEST = """
INSERT INTO run_decisions (run_id, decision_id, decided_at_ms)
VALUES (%(run_id)s, %(decision_id)s, %(decided_at_ms)s)
ON CONFLICT (run_id) DO UPDATE
SET decision_id = EXCLUDED.decision_id, decided_at_ms = EXCLUDED.decided_at_ms, updated_at = now()
WHERE (run_decisions.decided_at_ms, run_decisions.decision_id) < (EXCLUDED.decided_at_ms, EXCLUDED.decision_id)
"""


class DecisionStore:
    """A pool of connections to the sink's database and the one write it does."""

    def __init__(self, dsn: str, worker_name: str, max_connections: int = 4) -> None:
        self.worker_name = worker_name
        # A short wait for a connection: while the database is down the sink's own backoff paces the retries.
        self.pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=max_connections, open=False, name="durable-sink", timeout=5.0
        )

    async def open(self, timeout_s: float = 30.0) -> None:
        await self.pool.open(wait=True, timeout=timeout_s)

    async def close(self) -> None:
        await self.pool.close()

    async def apply(self, item: Decision) -> None:
        """Store one decision and move its run's latest to it if newer; returns once committed."""
        d = item.decision
        row = {
            **d.model_dump(mode="python"),
            "source_topic": item.source.topic,
            "source_partition": item.source.partition,
            "source_offset": item.source.offset,
            "stored_by": self.worker_name,
        }
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_INSERT_DECISION, row)
            await conn.execute(_UPSERT_LATEST, row)
