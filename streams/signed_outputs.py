"""Signed outputs: the engine signs every run's output record (e.g. a decision) as it writes it.

The engine knows no workload schema, so a workflow's output schema opts in by
ending with three optional string fields, in this order (:data:`TRUST_FIELDS`):

- ``signing_key_id``: the key id (:func:`streams.signing.key_id`) that signed;
- ``journal_head``: the hash of the run's last journal event before the
  output (:mod:`processors.engine.chain`), which links the signature to the
  run's whole history;
- ``signature``: 128 hex digits, an Ed25519 signature.

What is signed, exactly: ``DOMAIN`` followed by the record's Avro
single-object encoding (``C3 01``, the schema fingerprint, the body) up to,
not including, the ``signature`` field. Because ``signature`` is the last
field, the written value is that prefix followed by the signature's encoding,
``02 80 02`` (union branch 1, string length 128) and the 128 hex digits: a
verifier strips the last 131 bytes and needs no Avro library (README,
"Trust"). The signed bytes thus cover every other field, the key id, the
chain head and the writer schema's fingerprint.
"""

from __future__ import annotations

from typing import Any

from processors.engine.chain import TRUST_FIELDS
from schemas import DecodeError, encode
from schemas.codec import decode, schema
from streams.signing import Keyring, Signer

DOMAIN = b"durable-decision/v1\x00"
SIGNATURE_HEX = 128
# Union branch 1 (zigzag 1 = 0x02), then the string's length 128 (zigzag 256 = varint 0x80 0x02).
SIGNATURE_PREFIX = b"\x02\x80\x02"
SIGNED_TAIL = len(SIGNATURE_PREFIX) + SIGNATURE_HEX


class UnsignableSchema(ValueError):
    """A workflow's output schema does not end with the trust fields, so its outputs cannot be signed."""


def signable(schema_name: str) -> bool:
    """Whether the schema ends with :data:`TRUST_FIELDS` (so the engine can sign its records)."""
    fields = [f["name"] for f in schema(schema_name).parsed["fields"]]
    return tuple(fields[-3:]) == TRUST_FIELDS


def require_signable(schema_name: str) -> None:
    """:class:`UnsignableSchema` unless ``schema_name``'s records can be signed."""
    if not signable(schema_name):
        raise UnsignableSchema(
            f"output schema {schema_name} must end with the optional string fields {', '.join(TRUST_FIELDS)} "
            "to be signed (or set DURABLE_SIGNING=off)"
        )


def sign(schema_name: str, record: dict[str, Any], journal_head: str | None, signer: Signer) -> bytes:
    """The encoded, signed output record: the trust fields set, the signature over the bytes before it."""
    unsigned = encode(
        schema_name, {**record, "signing_key_id": signer.key_id, "journal_head": journal_head, "signature": None}
    )
    prefix = unsigned[:-1]  # the trailing 0x00 is the null branch of ``signature``
    signature = signer.sign(DOMAIN + prefix).hex()
    return prefix + SIGNATURE_PREFIX + signature.encode()


def verify(value: bytes, keyring: Keyring) -> tuple[str | None, dict[str, Any]]:
    """(None, record) if ``value`` is an output signed by a key of ``keyring``; else (why not, record or {})."""
    try:
        _, record = decode(value)
    except DecodeError as exc:
        return f"not a readable record: {exc}", {}
    kid, signature = record.get("signing_key_id"), record.get("signature")
    if not isinstance(kid, str) or not isinstance(signature, str):
        return "unsigned (no signing_key_id or signature)", record
    tail = SIGNATURE_PREFIX + signature.encode()
    if len(signature) != SIGNATURE_HEX or not value.endswith(tail):
        return "signature is not the record's last field of 128 hex digits", record
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        return "signature is not hex", record
    return keyring.verify(kid, raw, DOMAIN + value[:-SIGNED_TAIL]), record
