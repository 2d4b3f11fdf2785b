"""Webhook signatures, the way webhook senders do them: HMAC-SHA256 over the timestamp and the body.

Header ``Durable-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``. A receiver
recomputes the HMAC with the shared secret, compares in constant time, and refuses a timestamp
outside its replay window (:data:`REPLAY_WINDOW_S`), so a captured request cannot be replayed later::

    import hashlib, hmac, time

    def verify(secret: bytes, body: bytes, header: str, window_s: int = 300) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(","))
        expected = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= window_s
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Durable-Signature"
REPLAY_WINDOW_S = 300


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Durable-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, now: float | None = None, window_s: int = REPLAY_WINDOW_S) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within the replay window."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    moment = time.time() if now is None else now
    return hmac.compare_digest(expected, given) and abs(moment - timestamp) <= window_s
