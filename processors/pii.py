"""Personal data never reaches Kafka raw: it is replaced by stable keyed tokens.

A token is ``pii_`` + the first 16 hex digits of
HMAC-SHA256(key, tenant \x1f kind:value): the same person gives the same token
within a tenant (joins and fraud history still work), a different one in
another tenant (no linking across tenants), and nobody without the key can
reverse it. Free text is scrubbed by :mod:`processors.redaction` (which puts
these tokens in place of a report's own values).

The key, in order:

1. ``DURABLE_PII_KEY``, the key itself (what production sets, from a secret
   store; the same on every process that tokenises).
2. ``DURABLE_PII_KEY_FILE``, a file holding it (created if missing).
3. ``<state root>/pii.key``, where the state root is the parent of
   ``DURABLE_STATE_DIR`` (default ``.durable/pii.key``): generated on first
   use (32 random bytes, hex), owner-only (0600), logged once, reused after.

There is no built-in key. With ``DURABLE_ENV=production`` nothing is generated:
:func:`require_explicit_key` (called by ``durable worker``) refuses to start
without 1 or 2, and refuses the public demo key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from processors import keyfiles

log = logging.getLogger(__name__)

KEY_ENV = "DURABLE_PII_KEY"
KEY_FILE_ENV = "DURABLE_PII_KEY_FILE"
PRODUCTION_ENV = "DURABLE_ENV"

# Public on purpose: the key the demo and the tests use, under which the
# shipped fraud-history table (processors/fnol/history.json) is keyed.
# Never a production key: require_explicit_key refuses it.
DEMO_KEY = "durable-demo-and-test-pii-key-not-secret"

_loaded: dict[Path, bytes] = {}


class PiiKeyError(RuntimeError):
    """No usable PII key: missing in production mode, or a key file that is unsafe or unreadable."""


def production() -> bool:
    """True when ``DURABLE_ENV`` says production (then keys are never generated)."""
    return os.environ.get(PRODUCTION_ENV, "").strip().lower() in ("production", "prod")


def key_file() -> Path:
    """Where the key file is: ``DURABLE_PII_KEY_FILE``, else ``pii.key`` next to the state directory."""
    explicit = os.environ.get(KEY_FILE_ENV, "").strip()
    if explicit:
        return Path(explicit)
    return keyfiles.state_root_file("pii.key")


def _read(path: Path) -> bytes:
    return keyfiles.read(path, "PII key", 32, PiiKeyError)


def _generate(path: Path) -> None:
    keyfiles.generate(path, "PII key", KEY_ENV, "Every process that tokenises")


def _key() -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = key_file()
    cached = _loaded.get(path)
    if cached is not None:
        return cached
    if not path.exists():
        if production():
            raise PiiKeyError(f"{PRODUCTION_ENV}=production and no PII key: set {KEY_ENV} or {KEY_FILE_ENV}")
        _generate(path)
    key = _read(path)
    _loaded[path] = key
    return key


def require_explicit_key() -> None:
    """In production mode, refuse to run without an explicit, non-demo key (``durable worker`` calls it)."""
    if not production():
        return
    env = os.environ.get(KEY_ENV, "")
    explicit_file = os.environ.get(KEY_FILE_ENV, "").strip()
    if env == DEMO_KEY:
        raise PiiKeyError(f"{KEY_ENV} is the public demo key; production needs its own secret key")
    if env:
        if len(env) < 32:
            raise PiiKeyError(f"{KEY_ENV} has {len(env)} characters; production needs 32 or more")
        return
    if explicit_file and Path(explicit_file).exists():
        _read(Path(explicit_file))
        return
    raise PiiKeyError(
        f"{PRODUCTION_ENV}=production and no PII key: set {KEY_ENV} (or {KEY_FILE_ENV} to an existing file)"
    )


def token(kind: str, value: str, tenant: str) -> str:
    """A stable keyed token for one personal value of one tenant (value normalised: trimmed, case-folded)."""
    norm = " ".join(value.split()).casefold()
    digest = hmac.new(_key(), f"{tenant}\x1f{kind}:{norm}".encode(), hashlib.sha256).hexdigest()
    return f"pii_{digest[:16]}"
