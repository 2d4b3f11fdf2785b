"""Secret files a process generates for itself when none is configured: owner-only, race-safe, read back checked.

Used for the PII key (:mod:`processors.pii`) and the worker secret
(:mod:`streams.authentication`): outside production mode, a missing secret is
generated once (32 random bytes, hex) and every later process on the machine
reuses it; a file other users can read is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def state_root_file(name: str) -> Path:
    """``name`` next to the state directory (the parent of ``DURABLE_STATE_DIR``, default ``.durable/``)."""
    return Path(os.environ.get("DURABLE_STATE_DIR", ".durable/state")).parent / name


def generate(path: Path, what: str, setting: str, shared_by: str) -> None:
    """Write a fresh secret to ``path`` unless one is there; safe when two processes race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(32) + "\n")
        # link() fails if the name exists: the first writer wins and nobody reads a half-written secret.
        os.link(tmp, path)
        log.warning(
            "no %s set: generated a random %s in %s (owner-only). %s must share it; set %s in production",
            setting,
            what,
            path,
            shared_by,
            setting,
        )
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path, what: str, min_chars: int, error: type[Exception]) -> bytes:
    """The secret in ``path``, or ``error`` if others can read the file or the secret is too short."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(f"{what} file {path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it")
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < min_chars:
        raise error(f"{what} file {path} holds {len(value)} characters; {min_chars} or more are needed")
    return value.encode()
