"""One run per claim: the gateway's record of what it has accepted, to answer a resubmission.

The run id is the workflow's (``fnol:<tenant>:<claim>``), so the same claim
is always the same run. What this adds is the answer: the record keeps the
fingerprint (SHA-256 of the canonical JSON) of the tokenised input first
accepted for each run, so the same claim with another body is a 409 here,
before Kafka, rather than a conflict the engine journals and dead-letters
later. ``Idempotency-Key`` values are kept per tenant the same way: the same
key with another body is a 422 (as the IETF idempotency-key draft says).

The record is a SQLite file in the state directory: gateways on one host
share it; a gateway elsewhere, or ``durable produce``, does not see it, and
there the engine's own check (INPUT_CONFLICT in the run's journal, and a
dead letter holding the conflicting input) is what catches a conflict.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Claimed(StrEnum):
    NEW = "new"  # first time: produce it
    SAME = "same"  # this run with this input before: the same run
    CONFLICT = "conflict"  # this run with another input: 409


@dataclass(frozen=True)
class Claim:
    outcome: Claimed
    acked: bool  # the broker acknowledged the first submission


class IdempotencyRecord:
    """Run id -> input fingerprint, and (tenant, Idempotency-Key) -> (run id, fingerprint)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Survives a crash of the gateway, not of the machine: an fsync per claim would cap a gateway at
        # ~80 claims/s here, and a record lost with the machine is still caught by the engine (INPUT_CONFLICT).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "acked INTEGER NOT NULL DEFAULT 0, at_ms INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (tenant TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (tenant, key))"
        )
        self._lock = threading.Lock()

    def claim(self, run_id: str, fingerprint: str) -> Claim:
        """Record ``run_id`` with this input if it is new; say whether it was new, the same, or a conflict."""
        with self._lock:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO runs (run_id, fingerprint, at_ms) VALUES (?, ?, ?)",
                (run_id, fingerprint, int(time.time() * 1000)),
            ).rowcount
            if inserted:
                return Claim(Claimed.NEW, False)
            was, acked = self._db.execute(
                "SELECT fingerprint, acked FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return Claim(Claimed.SAME if was == fingerprint else Claimed.CONFLICT, bool(acked))

    def acked(self, run_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET acked = 1 WHERE run_id = ?", (run_id,))

    def forget(self, run_id: str) -> None:
        """The write failed: the claim may come again, with any body."""
        with self._lock:
            self._db.execute("DELETE FROM runs WHERE run_id = ? AND acked = 0", (run_id,))

    def key(self, tenant: str, key: str, run_id: str, fingerprint: str) -> tuple[str, str]:
        """Record an Idempotency-Key for this request if new; returns what the key was first used for."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO keys (tenant, key, run_id, fingerprint, at_ms) VALUES (?, ?, ?, ?, ?)",
                (tenant, key, run_id, fingerprint, int(time.time() * 1000)),
            )
            row = self._db.execute(
                "SELECT run_id, fingerprint FROM keys WHERE tenant = ? AND key = ?", (tenant, key)
            ).fetchone()
        return str(row[0]), str(row[1])

    def known(self, run_id: str) -> bool:
        return self.accepted_at(run_id) is not None

    def accepted_at(self, run_id: str) -> int | None:
        """When this gateway's record took the run (ms), if it has and the broker acknowledged it."""
        with self._lock:
            row = self._db.execute("SELECT at_ms FROM runs WHERE run_id = ? AND acked = 1", (run_id,)).fetchone()
        return int(row[0]) if row is not None else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
