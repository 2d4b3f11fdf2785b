"""The Avro single-object codec: round trips for every schema, framing, and every way bytes can be bad."""

from __future__ import annotations

import io
import json
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form
from fastavro.utils import generate_many

from schemas import codec
from schemas.codec import DecodeError, UnknownSchemaError, decode, encode
from schemas.fnol import SCHEMA_DIR as FNOL_SCHEMA_DIR

# The engine's records and the FNOL workload's (registered with the codec by importing schemas.fnol).
SCHEMA_FILES = sorted([*codec.SCHEMA_DIR.glob("*.avsc"), *FNOL_SCHEMA_DIR.glob("*.avsc")])
SAMPLES = 25


def _parsed(path: Path) -> dict[str, Any]:
    parsed = parse_schema(json.loads(path.read_text()), _write_hint=False, _force=True)
    assert isinstance(parsed, dict)
    return parsed


def _records(schema: dict[str, Any], count: int, seed: int) -> list[Any]:
    """fastavro's random records for ``schema``, seeded (it uses the global ``random``)."""
    state = random.getstate()
    random.seed(seed)
    try:
        return list(generate_many(schema, count))
    finally:
        random.setstate(state)


@pytest.fixture
def one_of_each() -> dict[str, dict[str, Any]]:
    """One generated record per current schema, by full name."""
    return {p["name"]: _records(p, 1, seed=7)[0] for p in map(_parsed, SCHEMA_FILES)}


# ---------------------------------------------------------------- CRC-64-AVRO, straight from the spec

EMPTY = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def rabin64(data: bytes) -> int:
    """The Avro spec's table-driven Rabin fingerprint, as an unsigned 64-bit integer."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize(
    ("canonical", "signed"),
    [
        # apache/avro share/test/data/schema-tests.txt (Java's signed longs)
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
        ('{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
        ('{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}', 7843277075252814651),
    ],
)
def test_reference_rabin_matches_avro_test_vectors(canonical: str, signed: int) -> None:
    assert rabin64(canonical.encode()) == signed & 0xFFFFFFFFFFFFFFFF


# ---------------------------------------------------------------- round trips


def test_every_schema_file_is_in_the_catalogue() -> None:
    current, _ = codec.catalogue()
    assert len(SCHEMA_FILES) >= 9
    assert {_parsed(p)["name"] for p in SCHEMA_FILES} <= set(current)


def test_a_registered_directory_adds_its_schemas_and_versions(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "Thing", "namespace": "durable.elsewhere", "fields": [{"name": "a", "type": "int"}]}
    (tmp_path / "thing.avsc").write_text(json.dumps(schema))
    with pytest.raises(UnknownSchemaError):
        codec.schema("durable.elsewhere.Thing")
    codec.register(tmp_path)
    assert decode(encode("durable.elsewhere.Thing", {"a": 3})) == ("durable.elsewhere.Thing", {"a": 3})
    assert tmp_path.resolve() in codec.schema_dirs()


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_round_trip_generated_records(path: Path) -> None:
    parsed = _parsed(path)
    name = parsed["name"]
    records = _records(parsed, SAMPLES, seed=zlib.crc32(path.stem.encode()))
    encoded = [encode(name, r) for r in records]
    assert len(set(encoded)) > 1, "generated records should differ"
    for record, data in zip(records, encoded, strict=True):
        assert decode(data) == (name, record)
        assert decode(data, expect=name) == (name, record)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_body_is_plain_avro_binary_of_the_schema(path: Path) -> None:
    """Any Avro library can read the body with the .avsc alone: no extra framing after the header."""
    parsed = _parsed(path)
    record = _records(parsed, 1, seed=3)[0]
    data = encode(parsed["name"], record)
    body = io.BytesIO(data[codec.HEADER_LEN :])
    assert fastavro.schemaless_reader(body, parsed) == record
    assert body.tell() == len(data) - codec.HEADER_LEN


# ---------------------------------------------------------------- the header


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_header_is_magic_then_the_schemas_8_byte_fingerprint(path: Path) -> None:
    parsed = _parsed(path)
    data = encode(parsed["name"], _records(parsed, 1, seed=5)[0])
    assert data[:2] == b"\xc3\x01"
    assert len(data[2:10]) == 8
    version = codec.peek_schema(data)
    assert version.name == parsed["name"]
    assert data[2:10] == version.fingerprint
    # The fingerprint is CRC-64-AVRO of the parsing canonical form, in one byte order or the other.
    fp = rabin64(to_parsing_canonical_form(parsed).encode())
    assert data[2:10] in (fp.to_bytes(8, "little"), fp.to_bytes(8, "big"))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_header_fingerprint_is_little_endian_as_the_avro_spec_says(path: Path) -> None:
    parsed = _parsed(path)
    data = encode(parsed["name"], _records(parsed, 1, seed=5)[0])
    fp = rabin64(to_parsing_canonical_form(parsed).encode())
    assert data[2:10] == fp.to_bytes(8, "little")


def test_fingerprints_are_distinct_per_schema() -> None:
    current, _ = codec.catalogue()
    assert len({v.fingerprint for v in current.values()}) == len(current)


# ---------------------------------------------------------------- bad bytes


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00", b"\x00\x01" + bytes(8) + b"\x02", b"\xc3\x02" + bytes(10), b'{"json": true}'],
    ids=["empty", "one-byte", "short-header", "wrong-first-magic", "wrong-second-magic", "json"],
)
def test_bad_magic_or_short_header_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="magic"):
        decode(data)


def test_unknown_fingerprint_is_unknown_schema_error(one_of_each: dict[str, dict[str, Any]]) -> None:
    name = "durable.engine.StepCommand"
    good = encode(name, one_of_each[name])
    known = set(codec.catalogue()[1])
    fake = bytes(8)
    assert fake not in known
    with pytest.raises(UnknownSchemaError, match="unknown schema fingerprint"):
        decode(good[:2] + fake + good[10:])
    # Also a subclass of DecodeError, so callers that catch DecodeError dead-letter it too.
    with pytest.raises(DecodeError):
        decode(good[:2] + bytes(reversed(good[2:10])) + good[10:])


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_every_truncation_of_the_body_is_a_decode_error(path: Path) -> None:
    parsed = _parsed(path)
    data = encode(parsed["name"], _records(parsed, 1, seed=11)[0])
    for cut in range(codec.HEADER_LEN, len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


STEP_COMMAND = {
    "command_id": "r1/a/1",
    "run_id": "r1",
    "workflow": "wf",
    "step": "a",
    "attempt": 1,
    "input_json": "{}",
    "scheduled_at_ms": 1,
    "timeout_ms": 1000,
}


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda head, body: head + b"\xfe\xff\xff\x0f" + body[1:],  # first string's length far past the end
        lambda head, body: head + b"\x01" + body[1:],  # negative string length
        lambda head, body: head + body[:1] + b"\xff\xfe\xfd" + body[4:],  # invalid UTF-8 in a string
        lambda head, body: head + b"\xff" * 20,  # a varint that never ends
    ],
    ids=["length-past-end", "negative-length", "invalid-utf8", "endless-varint"],
)
def test_corrupt_bodies_are_decode_errors(corrupt: Any) -> None:
    data = encode("durable.engine.StepCommand", STEP_COMMAND)
    head, body = data[: codec.HEADER_LEN], data[codec.HEADER_LEN :]
    assert body[0] == 2 * len("r1/a/1")  # zig-zag length of the first string
    with pytest.raises(DecodeError):
        decode(corrupt(head, body))


def test_enum_index_out_of_range_is_a_decode_error() -> None:
    name = "durable.engine.RunState"
    record = {
        "run_id": "r",
        "workflow": "w",
        "status": "RUNNING",
        "input_json": "{}",
        "seq": 1,
        "started_at_ms": 1,
        "updated_at_ms": 1,
        "steps": [],
    }
    data = encode(name, record)
    # run_id "r" (2 bytes) + workflow "w" (2 bytes), then the enum index varint.
    at = codec.HEADER_LEN + 4
    assert data[at] == 0  # RUNNING
    bad = data[:at] + bytes([2 * 40]) + data[at + 1 :]
    with pytest.raises(DecodeError):
        decode(bad)


def test_trailing_garbage_is_a_decode_error(one_of_each: dict[str, dict[str, Any]]) -> None:
    name = "durable.engine.StepCommand"
    with pytest.raises(DecodeError):
        decode(encode(name, one_of_each[name]) + b"garbage")


def test_expect_with_another_schema_is_a_decode_error(one_of_each: dict[str, dict[str, Any]]) -> None:
    data = encode("durable.engine.StepCommand", one_of_each["durable.engine.StepCommand"])
    with pytest.raises(DecodeError, match=r"expected a durable\.engine\.StepResult record"):
        decode(data, expect="durable.engine.StepResult")
    assert decode(data, expect="durable.engine.StepCommand")[0] == "durable.engine.StepCommand"


def test_encode_rejects_an_unknown_schema_name_and_an_invalid_record() -> None:
    with pytest.raises(UnknownSchemaError):
        encode("durable.engine.NoSuchThing", {})
    with pytest.raises((ValueError, TypeError)):
        encode("durable.engine.StepCommand", {"command_id": "x"})


# ---------------------------------------------------------------- old versions stay readable


@pytest.fixture
def versions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch ``schemas/versions`` for the codec's catalogue, restored afterwards."""
    monkeypatch.setattr(codec, "VERSIONS_DIR", tmp_path)
    codec.catalogue.cache_clear()
    yield tmp_path
    codec.catalogue.cache_clear()


def test_a_record_written_with_an_older_published_version_decodes_into_the_current_schema(
    versions_dir: Path,
) -> None:
    current = json.loads((codec.SCHEMA_DIR / "step_result.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "worker"])
    (versions_dir / "StepResult.old.avsc").write_text(json.dumps(old))
    old_version = codec.load_version(versions_dir / "StepResult.old.avsc")
    record = {
        "command_id": "r/a/1",
        "run_id": "r",
        "workflow": "w",
        "step": "a",
        "attempt": 1,
        "output_json": '{"ok":true}',
        "error": None,
        "started_at_ms": 5,
        "finished_at_ms": 6,
    }
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old_version.parsed, record)
    data = codec.MAGIC + old_version.fingerprint + body.getvalue()

    name, decoded = decode(data, expect="durable.engine.StepResult")
    assert name == "durable.engine.StepResult"
    assert decoded == {**record, "worker": "", "action": "run", "recorded_json": None, "settings_json": None}  # the current schema's defaults fill the new fields


def test_without_its_published_version_an_old_record_is_unknown(versions_dir: Path) -> None:
    current = json.loads((codec.SCHEMA_DIR / "step_result.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "worker"])
    path = versions_dir / "StepResult.old.avsc"
    path.write_text(json.dumps(old))
    fp = codec.load_version(path).fingerprint
    path.unlink()
    codec.catalogue.cache_clear()
    with pytest.raises(UnknownSchemaError):
        decode(codec.MAGIC + fp + b"\x00" * 20)
