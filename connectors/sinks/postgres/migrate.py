"""Versioned SQL migrations, applied at start: ``migrations/NNNN_name.sql``, each once, in order.

The pending files run in one transaction, each recording its row in
``durable_migrations`` (version, name, SHA-256 of the file), under a
transaction-scoped advisory lock, so two sinks starting together apply each
file once and a failing file leaves the schema as it was. A file edited after it
was applied is refused (its checksum differs): add a new file instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant shared by every process that migrates this schema (pg_advisory_xact_lock's key).
_LOCK_KEY = 0x64757261626C65  # "durable"


class MigrationError(RuntimeError):
    """The database's applied migrations do not match the files (edited or unknown versions)."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, in version order (a misnamed or duplicated file is an error)."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is taken by {found[version].name}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations not yet applied, all in one transaction; returns the versions applied now."""
    applied_now: list[int] = []
    with psycopg.connect(dsn) as conn, conn.transaction():
        # Taken before anything is read, so a second sink starting now waits and then finds them applied.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS durable_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done: dict[int, str] = dict(conn.execute("SELECT version, checksum FROM durable_migrations").fetchall())
        for migration in migrations(directory):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it was applied; "
                        "add a new migration instead"
                    )
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO durable_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration.version)
    return applied_now
