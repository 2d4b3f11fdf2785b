"""Workers trust only workers: step results, control records and step commands carry a MAC.

Anyone who can write ``<ns>.step.results`` or ``<ns>.runs.control`` could
otherwise answer any run's scheduled attempt or redrive any dead letter. So
whoever writes those records (executors; the ``durable dlq redrive`` CLI)
signs them, and the orchestrator verifies before applying
(:mod:`streams.events`): a record whose MAC is missing or wrong is
dead-lettered and changes nothing. Likewise the orchestrator signs the step
commands it writes and executors run no other (:mod:`streams.executor`): a
forged command's inputs would otherwise steer a real step, whose result the
executor would then sign.

The MAC is HMAC-SHA256 under the worker secret over the topic name, the
record's id (a result's or a command's ``command_id``, a control's
``control_id``) and the
record's exact value bytes, so it cannot be moved to another record, to the
other kind of record, or to another namespace's topic. It travels in a Kafka
record header, ``durable-mac: v1=<64 hex digits>``, rather than in an Avro
field: the MAC is over the bytes as written (no canonical re-encoding of a
record that would contain its own MAC), the records users read and the
frozen schemas stay as they are, and trace context already travels in
headers the same way. A copy of the value without its headers is, rightly,
unauthenticated.

The secret that signs, in order (as :mod:`processors.pii` finds its key):

1. ``DURABLE_WORKER_SECRET``, the secret itself (production: from a secret
   store; the same on every worker and on operators' CLIs).
2. ``DURABLE_WORKER_SECRET_FILE``, a file holding it (created if missing).
3. ``<state root>/worker.key``, where the state root is the parent of
   ``DURABLE_STATE_DIR`` (default ``.durable/worker.key``): generated on first
   use (32 random bytes, hex), owner-only (0600), logged once, reused after.

With ``DURABLE_ENV=production`` nothing is generated:
:func:`require_explicit_secret` refuses a worker without 1 or 2.
Rotation: ``DURABLE_WORKER_SECRETS`` lists older secrets (comma-separated)
that still verify, while only the one above signs.

What the MAC proves is that the writer held the secret: identities written
into such records (a redrive's ``requested_by``) are as good as the secret's
custody, no better.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from processors import keyfiles
from processors.pii import production

log = logging.getLogger(__name__)

SECRET_ENV = "DURABLE_WORKER_SECRET"
SECRET_FILE_ENV = "DURABLE_WORKER_SECRET_FILE"
OLD_SECRETS_ENV = "DURABLE_WORKER_SECRETS"
HEADER = "durable-mac"
VERSION = "v1"
MIN_CHARS = 32

# As confluent-kafka gives them (a list of pairs; its typing also allows a mapping).
Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]

_loaded: dict[Path, bytes] = {}


class WorkerSecretError(RuntimeError):
    """No usable worker secret: missing in production mode, or a secret file that is unsafe or unreadable."""


class Unauthenticated(ValueError):
    """A record's MAC is missing, malformed, or made under no secret this process accepts."""


def secret_file() -> Path:
    """Where the secret file is: ``DURABLE_WORKER_SECRET_FILE``, else ``worker.key`` next to the state directory."""
    explicit = os.environ.get(SECRET_FILE_ENV, "").strip()
    if explicit:
        return Path(explicit)
    return keyfiles.state_root_file("worker.key")


def _read(path: Path) -> bytes:
    return keyfiles.read(path, "worker secret", MIN_CHARS, WorkerSecretError)


def _generate(path: Path) -> None:
    keyfiles.generate(path, "worker secret", SECRET_ENV, "Every worker and every CLI that redrives")


def signing_secret() -> bytes:
    """The secret this process signs with (see the module docstring for where it comes from)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    path = secret_file()
    cached = _loaded.get(path)
    if cached is not None:
        return cached
    if not path.exists():
        if production():
            raise WorkerSecretError(f"DURABLE_ENV=production and no worker secret: set {SECRET_ENV}")
        _generate(path)
    secret = _read(path)
    _loaded[path] = secret
    return secret


def verifying_secrets() -> list[bytes]:
    """Every secret a MAC may be made under: the signing one, then the older ones of ``DURABLE_WORKER_SECRETS``."""
    old = [s.strip().encode() for s in os.environ.get(OLD_SECRETS_ENV, "").split(",") if s.strip()]
    return [signing_secret(), *old]


def require_explicit_secret() -> None:
    """In production mode, refuse to run without an explicit worker secret of 32+ characters."""
    if not production():
        return
    env = os.environ.get(SECRET_ENV, "")
    explicit_file = os.environ.get(SECRET_FILE_ENV, "").strip()
    if env:
        if len(env) < MIN_CHARS:
            raise WorkerSecretError(f"{SECRET_ENV} has {len(env)} characters; production needs {MIN_CHARS} or more")
        return
    if explicit_file and Path(explicit_file).exists():
        _read(Path(explicit_file))
        return
    raise WorkerSecretError(
        f"DURABLE_ENV=production and no worker secret: set {SECRET_ENV} (or {SECRET_FILE_ENV} to an existing file)"
    )


def mac(secret: bytes, topic: str, record_id: str, value: bytes) -> str:
    """HMAC-SHA256 (hex) of one record: its topic, its id and its value bytes, each length-prefixed."""
    h = hmac.new(secret, f"durable-mac/{VERSION}".encode(), hashlib.sha256)
    for part in (topic.encode(), record_id.encode(), value):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def header(topic: str, record_id: str, value: bytes, secret: bytes | None = None) -> tuple[str, bytes]:
    """The ``durable-mac`` header for a record about to be written (under the signing secret by default)."""
    signed = mac(secret if secret is not None else signing_secret(), topic, record_id, value)
    return HEADER, f"{VERSION}={signed}".encode()


def verify(
    topic: str, record_id: str, value: bytes, headers: Headers | None, accepted: Sequence[bytes] | None = None
) -> None:
    """Raise :class:`Unauthenticated` unless the record carries one MAC made under an accepted secret."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    found = [v for k, v in pairs if k == HEADER]
    if not found:
        raise Unauthenticated(f"no {HEADER} header: not written by a worker holding the worker secret")
    if len(found) > 1:
        raise Unauthenticated(f"{len(found)} {HEADER} headers: a record carries one")
    raw = found[0]
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else (raw or "")
    version, _, given = text.partition("=")
    if version != VERSION or len(given) != 64:
        raise Unauthenticated(f"{HEADER} header {text[:80]!r} is not '{VERSION}=<64 hex digits>'")
    for secret in accepted if accepted is not None else verifying_secrets():
        if hmac.compare_digest(mac(secret, topic, record_id, value), given):
            return
    raise Unauthenticated(f"{HEADER} does not verify under the worker secret: forged, altered or moved record")
