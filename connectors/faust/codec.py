"""The ``durable`` Faust codec: our Avro single-object records in and out of Faust.

Decoding needs no hint: the record's header names its writer schema. Encoding
needs the schema, which a typed record (:mod:`connectors.faust.records`)
names through its Faust namespace (the Avro full name, e.g.
``durable.fnol.RoutedDecision``); a plain dict is refused, since it names none.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

import schemas.fnol  # noqa: F401 - FNOL's records, known to the codec
from schemas import decode, encode

CODEC_NAME = "durable"


class DurableCodec(codecs.Codec):
    """Avro single-object encoding (``C3 01`` + schema fingerprint + body), as the engine writes it."""

    def _loads(self, s: bytes) -> Any:
        _, record = decode(s)
        return record

    def _dumps(self, s: Any) -> bytes:
        top = s.to_representation() if hasattr(s, "to_representation") else s
        if not isinstance(top, dict):
            raise TypeError(f"the durable codec writes records, not {type(s).__name__}")
        meta = top.get("__faust")
        data = _plain(top)
        name = meta.get("ns") if isinstance(meta, dict) else None
        if not name:
            raise TypeError("the durable codec writes typed records (connectors.faust.records), not plain dicts")
        return encode(str(name), data)


def _plain(value: Any) -> Any:
    """Faust models (nested too) as plain dicts and lists, as the Avro writer wants them."""
    if hasattr(value, "to_representation"):
        value = value.to_representation()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "__faust"}  # Faust's metadata is no Avro field
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


codecs.register(CODEC_NAME, DurableCodec())
