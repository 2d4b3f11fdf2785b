"""API keys: one per client, each of one tenant and one role, kept only as hashes in a JSON file.

A key reads ``dk_<id>_<secret>``: the id finds the record, the secret is
checked against its SHA-256 with a constant-time comparison. The secret is
32 random bytes, so a fast hash is enough (there is no password to guess);
the file never holds a key itself, which is shown once, when created.
The gateway re-reads the file when it changes, so a revocation takes effect
without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

KEY_FORMAT = re.compile(r"^dk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TENANT_FORMAT = re.compile(r"^[a-z0-9_-]{1,64}$")  # the intake's tenant id alphabet


class Role(StrEnum):
    """What a key may do: submit runs (and follow them), view everything of its tenant, or also operate."""

    SUBMITTER = "submitter"
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: never the key, only its secret's hash."""

    key_id: str
    tenant: str
    role: Role
    secret_sha256: str
    created_at: float
    revoked_at: float | None = None
    name: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The key file: create, list, revoke (the CLI), and check a presented key (the gateway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int] | None = None

    def _read(self) -> dict[str, KeyRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            raw = json.loads(self.path.read_text())
            self._loaded = {
                r["key_id"]: KeyRecord(**{**r, "role": Role(r["role"])}) for r in raw.get("keys", [])
            }
            self._stamp = stamp
        return self._loaded

    def _write(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(r) for r in records.values()]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".apikeys-")
        with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600: hashes are not secrets, but no one else's business
            f.write(body)
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one
        self._stamp = None

    def create(self, tenant: str, role: Role, name: str = "") -> tuple[str, KeyRecord]:
        """A new key for ``tenant`` with ``role``: returns the key (shown once) and its record."""
        if not TENANT_FORMAT.fullmatch(tenant):
            raise ValueError(f"not a tenant id (lower-case letters, digits, _ and -, 1-64): {tenant!r}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = KeyRecord(key_id, tenant, role, _digest(secret), time.time(), None, name)
        with self._lock:
            records = dict(self._read())
            records[key_id] = record
            self._write(records)
        return f"dk_{key_id}_{secret}", record

    def list(self) -> list[KeyRecord]:
        with self._lock:
            return sorted(self._read().values(), key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark a key revoked (KeyError if there is no such key); revoking twice keeps the first time."""
        with self._lock:
            records = dict(self._read())
            record = records[key_id]
            if record.revoked_at is None:
                record = records[key_id] = KeyRecord(**{**asdict(record), "revoked_at": time.time()})
                self._write(records)
            return record

    def check(self, presented: str) -> KeyRecord | None:
        """The active record of a presented key, or None (malformed, unknown, wrong secret, revoked)."""
        match = KEY_FORMAT.fullmatch(presented)
        if match is None:
            return None
        with self._lock:
            record = self._read().get(match.group(1))
        # Compared even when the id is unknown, so the time taken says nothing about which ids exist.
        expected = record.secret_sha256 if record is not None else "0" * 64
        good = hmac.compare_digest(_digest(match.group(2)), expected)
        return record if good and record is not None and record.active else None
