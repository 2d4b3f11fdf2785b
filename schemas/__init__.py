"""Avro schemas of every record on Kafka, their pydantic mirrors, and the codec.

``to_bytes`` / ``from_bytes`` encode and decode a :class:`schemas.models.Record`
with the Avro schema its ``avro_name`` names; ``encode`` / ``decode`` work on
plain dicts by schema name.
"""

from typing import TypeVar

from schemas.codec import DecodeError, UnknownSchemaError, decode, encode, register
from schemas.models import SCHEMA_OF, Record

__all__ = [
    "SCHEMA_OF",
    "DecodeError",
    "Record",
    "UnknownSchemaError",
    "decode",
    "encode",
    "from_bytes",
    "register",
    "to_bytes",
]

R = TypeVar("R", bound=Record)


def to_bytes(model: Record) -> bytes:
    """Encode a record with its Avro schema."""
    name = getattr(type(model), "avro_name", "")
    if not isinstance(model, Record) or not name:
        raise TypeError(f"{type(model).__name__} has no Avro schema")
    return encode(name, model.model_dump(mode="python"))


def from_bytes(data: bytes, model: type[R]) -> R:
    """Decode bytes that must be a record of ``model``'s schema."""
    _, record = decode(data, expect=model.avro_name)
    try:
        return model.model_validate(record)
    except Exception as exc:
        raise DecodeError(f"{model.__name__} failed validation: {exc}") from exc
