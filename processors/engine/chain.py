"""The hash chain of a run's journal: each event names the hash of the run's previous event.

An event's hash is SHA-256 over ``DOMAIN`` and the event's Avro single-object
encoding as written (schema fingerprint and body), so a verifier hashes the
bytes it reads from the journal topic, whatever schema version wrote them.
The transition computes it from the event it builds (encoding is
deterministic, so re-writes after a crash carry the same links) and keeps the
head in the run's state; the run's output carries the head, so signing the
output covers the whole history before it.
"""

from __future__ import annotations

import hashlib

from schemas import to_bytes
from schemas.models import JournalEvent

DOMAIN = b"durable-journal/v1\x00"
# The fields a signed output schema ends with, in this order (streams.signed_outputs signs them).
TRUST_FIELDS = ("signing_key_id", "journal_head", "signature")


def hash_value(value: bytes) -> str:
    """The chain hash of a journal event's bytes as written (hex)."""
    return hashlib.sha256(DOMAIN + value).hexdigest()


def hash_event(event: JournalEvent) -> str:
    """The chain hash of ``event`` as the runtime writes it."""
    return hash_value(to_bytes(event))
