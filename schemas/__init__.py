"""Avro schemas of every record on Kafka, their pydantic mirrors, and the codec."""

from schemas.codec import DecodeError, UnknownSchemaError, decode, encode
from schemas.models import SCHEMA_OF

__all__ = ["SCHEMA_OF", "DecodeError", "UnknownSchemaError", "decode", "encode", "from_bytes", "to_bytes"]

from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def to_bytes(model: BaseModel) -> bytes:
    """Encode a model with its Avro schema."""
    if isinstance(model, BaseModel) and type(model) in SCHEMA_OF:
        data = model.model_dump(mode="python")
        return encode(SCHEMA_OF[type(model)], data)
    raise TypeError(f"{type(model).__name__} has no Avro schema")


def from_bytes(data: bytes, model: type[M]) -> M:
    """Decode bytes that must be a record of ``model``'s schema."""
    _, record = decode(data, expect=SCHEMA_OF[model])
    try:
        return model.model_validate(record)
    except Exception as exc:
        raise DecodeError(f"{model.__name__} failed validation: {exc}") from exc
