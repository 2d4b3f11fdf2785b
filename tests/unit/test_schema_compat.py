"""Published schema versions: every current schema is frozen, and fully compatible with its old versions."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import codec, registry

# Every schema the repository publishes: the engine's and FNOL's.
CURRENT = {name: v for schema_dir, _ in registry.schema_sets() for name, v in registry.current(schema_dir).items()}
FROZEN = [v for _, versions_dir in registry.schema_sets() for v in registry.frozen(versions_dir)]
PAIRS = [(old, CURRENT[old.name]) for old in FROZEN if old.name in CURRENT]


def _raw(name: str) -> dict[str, Any]:
    """The current schema of ``name`` as written in its .avsc (unparsed, with defaults)."""
    raw: dict[str, Any] = json.loads(CURRENT[name].path.read_text())
    return raw


# ---------------------------------------------------------------- (a) every current schema is published


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_current_schema_fingerprint_is_frozen(name: str) -> None:
    version = CURRENT[name]
    frozen_fps = {v.fingerprint for v in FROZEN if v.name == name}
    assert version.fingerprint in frozen_fps, (
        f"{version.path.name} changed without being published: run `python -m schemas.registry freeze` "
        "(and keep it fully compatible with the older versions)"
    )


def test_frozen_files_are_named_by_their_own_fingerprint() -> None:
    assert FROZEN, "schemas/versions/ holds no frozen versions"
    for version in FROZEN:
        assert version.path.name == version.frozen_file_name


def test_registry_fingerprint_is_the_codecs_fingerprint_of_the_same_schema() -> None:
    """Whatever byte order the header uses, the registry and codec name the same schema the same way."""
    for name, version in CURRENT.items():
        header_fp = codec.schema(name).fingerprint
        assert bytes.fromhex(version.fingerprint) in (header_fp, header_fp[::-1])


def test_the_codec_knows_every_frozen_version() -> None:
    _, by_fp = codec.catalogue()
    known = {fp.hex() for fp in by_fp} | {fp[::-1].hex() for fp in by_fp}
    assert {v.fingerprint for v in FROZEN} <= known


def test_check_reports_nothing_for_the_repository() -> None:
    assert [p for schema_dir, versions_dir in registry.schema_sets() for p in registry.check(schema_dir, versions_dir)] == []
    assert registry.main(["check"]) == 0


# ---------------------------------------------------------------- freeze / check on a scratch copy


@pytest.fixture
def scratch(tmp_path: Path) -> tuple[Path, Path]:
    schema_dir, versions_dir = tmp_path / "schemas", tmp_path / "schemas" / "versions"
    schema_dir.mkdir()
    for version in CURRENT.values():
        shutil.copy(version.path, schema_dir / version.path.name)
    return schema_dir, versions_dir


def test_freeze_publishes_each_unfrozen_schema_once(scratch: tuple[Path, Path]) -> None:
    schema_dir, versions_dir = scratch
    assert {v.name for v in registry.unfrozen(schema_dir, versions_dir)} == set(CURRENT)
    written = registry.freeze(schema_dir, versions_dir)
    assert sorted(p.name for p in written) == sorted(v.frozen_file_name for v in CURRENT.values())
    for path in written:  # a verbatim copy: defaults and docs are kept for resolution
        source = next(v.path for v in CURRENT.values() if v.frozen_file_name == path.name)
        assert path.read_bytes() == source.read_bytes()
    assert registry.unfrozen(schema_dir, versions_dir) == []
    assert registry.freeze(schema_dir, versions_dir) == []
    assert registry.check(schema_dir, versions_dir) == []


def test_check_lists_a_changed_schema_until_it_is_frozen(scratch: tuple[Path, Path]) -> None:
    schema_dir, versions_dir = scratch
    registry.freeze(schema_dir, versions_dir)
    path = schema_dir / "step_command.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "priority", "type": ["null", "int"], "default": None})
    path.write_text(json.dumps(schema))

    problems = registry.check(schema_dir, versions_dir)
    assert len(problems) == 1 and "durable.engine.StepCommand" in problems[0] and "not frozen" in problems[0]
    assert [p.name for p in registry.freeze(schema_dir, versions_dir)] == [registry.load(path).frozen_file_name]
    assert registry.check(schema_dir, versions_dir) == []  # the compatible change is now published


def test_check_reports_an_incompatible_change_even_once_frozen(scratch: tuple[Path, Path]) -> None:
    schema_dir, versions_dir = scratch
    registry.freeze(schema_dir, versions_dir)
    path = schema_dir / "step_command.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "priority", "type": "int"})  # no default: old data lacks it
    path.write_text(json.dumps(schema))
    registry.freeze(schema_dir, versions_dir)
    problems = registry.check(schema_dir, versions_dir)
    assert problems and all("StepCommand" in p for p in problems)
    assert any("priority" in p and "backward" in p for p in problems)


def test_cli(scratch: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    schema_dir, versions_dir = scratch
    monkeypatch.setattr(registry, "SCHEMA_DIR", schema_dir)
    monkeypatch.setattr(registry, "VERSIONS_DIR", versions_dir)
    assert registry.main(["check"]) == 1
    assert "not frozen" in capsys.readouterr().out
    assert registry.main(["freeze"]) == 0
    assert capsys.readouterr().out.count("froze ") == len(CURRENT)
    assert registry.main(["check"]) == 0
    assert registry.main(["bogus"]) == 2


def _project(read: Any, written: Any) -> Any:
    """``read`` cut down to the fields ``written`` has, at every depth (new nested fields dropped)."""
    if isinstance(read, dict) and isinstance(written, dict):
        return {k: _project(read[k], written[k]) for k in written if k in read}
    if isinstance(read, list) and isinstance(written, list) and len(read) == len(written):
        return [_project(r, w) for r, w in zip(read, written, strict=True)]
    return read


def _as_read(written: Any, reader_type: Any) -> Any:
    """What a reader makes of a written value: a symbol its enum lacks becomes the enum's default (Avro's rule)."""
    if isinstance(reader_type, dict) and reader_type.get("type") == "enum" and written not in reader_type["symbols"]:
        return reader_type["default"]
    return written


# ---------------------------------------------------------------- (b) full compatibility with older versions


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].path.name)
def test_current_schema_is_compatible_with_every_frozen_version_in_its_mode(pair: tuple[Any, Any]) -> None:
    old, new = pair
    assert registry.compatibility_problems(old.parsed, new.parsed, mode=registry.mode_of(old.name, old.fingerprint)) == []


def test_records_users_read_or_write_stay_fully_compatible() -> None:
    """Only engine-internal records may relax to BACKWARD; what users touch is FULL."""
    for name in ("durable.fnol.FnolReported", "durable.fnol.RoutedDecision", "durable.engine.DeadLetter",
                 "durable.engine.StepCommand", "durable.engine.StepResult", "durable.engine.RunControl"):
        assert registry.mode_of(name) == "FULL"
    assert set(registry.MODES) <= {"durable.engine.JournalEvent", "durable.engine.RunState"}
    # The one recorded exception: the two RoutedDecision versions from before RETRACTED (consumers upgrade first).
    assert {
        "durable.fnol.RoutedDecision": frozenset({"17e1f4f51cb61d28", "70b5e5179e363259"})
    } == registry.CONSUMERS_FIRST


def test_backward_mode_accepts_a_new_enum_symbol_that_full_mode_refuses() -> None:
    old = _raw("durable.engine.RunState")
    new = copy.deepcopy(old)
    _field(new, "status")["type"]["symbols"].append("SUSPENDED")  # a symbol no version has
    assert registry.compatibility_problems(old, new, mode="BACKWARD") == []
    assert registry.compatibility_problems(old, new, mode="FULL") != []


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].path.name)
def test_old_and_new_data_resolve_both_ways(pair: tuple[Any, Any]) -> None:
    """The same property spelled out with fastavro: old -> new (and new -> old for FULL), on seeded samples."""
    old, new = pair
    directions = [(old.parsed, new.parsed)]
    if registry.mode_of(old.name, old.fingerprint) == "FULL":
        directions.append((new.parsed, old.parsed))
    for writer, reader in directions:
        for record in registry.seeded_records(writer, 20, seed=1):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, writer, record)
            buf.seek(0)
            read = fastavro.schemaless_reader(buf, writer, reader)
            assert isinstance(read, dict)
            assert set(read) == {f["name"] for f in reader["fields"]}
            shared = {f["name"] for f in writer["fields"]} & set(read)
            types = {f["name"]: f["type"] for f in reader["fields"]}
            expected = {k: _as_read(record[k], types[k]) for k in shared}
            assert {k: _project(read[k], record[k]) for k in shared} == expected


def test_seeded_generation_is_deterministic_and_leaves_random_alone() -> None:
    import random

    random.seed(99)
    expected_next = random.random()
    random.seed(99)
    schema = CURRENT["durable.fnol.FnolReported"].parsed
    first = registry.seeded_records(schema, 5, seed=4)
    assert registry.seeded_records(schema, 5, seed=4) == first
    assert registry.seeded_records(schema, 5, seed=5) != first
    assert random.random() == expected_next


# ---------------------------------------------------------------- compatible evolutions pass


def _with_fields(schema: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out["fields"] = fields
    return out


def test_adding_an_optional_field_with_a_default_is_fully_compatible() -> None:
    old = _raw("durable.engine.StepCommand")
    new = _with_fields(old, [*old["fields"], {"name": "priority", "type": ["null", "int"], "default": None}])
    assert registry.compatibility_problems(old, new) == []


def test_removing_a_field_that_has_a_default_is_fully_compatible() -> None:
    old = _raw("durable.engine.StepResult")
    new = _with_fields(old, [f for f in old["fields"] if f["name"] != "worker"])
    assert registry.compatibility_problems(old, new) == []


def test_docs_and_field_order_do_not_break_compatibility() -> None:
    old = _raw("durable.engine.JournalEvent")
    new = _with_fields(old, list(reversed(old["fields"])))
    new["doc"] = "reworded"
    assert registry.compatibility_problems(old, new) == []


# ---------------------------------------------------------------- (c) breaking changes are caught


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_removing_a_field_without_default_breaks_forward_compatibility() -> None:
    old = _raw("durable.engine.StepCommand")
    new = _with_fields(old, [f for f in old["fields"] if f["name"] != "timeout_ms"])
    problems = registry.compatibility_problems(old, new)
    assert any(p.startswith("forward") and "timeout_ms" in p for p in problems), problems
    assert not any(p.startswith("backward") for p in problems), "new can still read old data"


def test_adding_a_field_without_default_breaks_backward_compatibility() -> None:
    old = _raw("durable.engine.StepCommand")
    new = _with_fields(old, [*old["fields"], {"name": "priority", "type": "int"}])
    problems = registry.compatibility_problems(old, new)
    assert any(p.startswith("backward") and "priority" in p for p in problems), problems
    assert not any(p.startswith("forward") for p in problems), "old readers ignore the extra field"


@pytest.mark.parametrize(
    ("field", "new_type"),
    [("attempt", "string"), ("input_json", "long"), ("scheduled_at_ms", "int"), ("run_id", ["null", "string"])],
)
def test_changing_a_field_type_is_caught(field: str, new_type: Any) -> None:
    old = _raw("durable.engine.StepCommand")
    new = copy.deepcopy(old)
    _field(new, field)["type"] = new_type
    problems = registry.compatibility_problems(old, new)
    assert problems and all(field in p or "sample" in p for p in problems), problems


def test_promotion_is_only_one_way() -> None:
    """int -> long reads old data (backward) but old readers cannot read longs (forward)."""
    old = _raw("durable.engine.StepCommand")
    new = copy.deepcopy(old)
    _field(new, "attempt")["type"] = "long"
    problems = registry.compatibility_problems(old, new)
    assert any(p.startswith("forward") and "attempt" in p and "long cannot be read as int" in p for p in problems)
    assert not any(p.startswith("backward") for p in problems)


def test_removing_an_enum_symbol_is_caught() -> None:
    old = _raw("durable.engine.JournalEvent")
    new = copy.deepcopy(old)
    _field(new, "kind")["type"]["symbols"].remove("RUN_FAILED")
    problems = registry.compatibility_problems(old, new)
    assert any(p.startswith("backward") and "RUN_FAILED" in p for p in problems), problems


def test_adding_an_enum_symbol_without_enum_default_breaks_old_readers() -> None:
    old = _raw("durable.engine.JournalEvent")
    new = copy.deepcopy(old)
    _field(new, "kind")["type"]["symbols"].append("RUN_CANCELLED")
    problems = registry.compatibility_problems(old, new)
    assert any(p.startswith("forward") and "RUN_CANCELLED" in p for p in problems), problems
    # With an enum default, old readers map the unknown symbol to it: fully compatible.
    old_with_default, new_with_default = copy.deepcopy(old), copy.deepcopy(new)
    _field(old_with_default, "kind")["type"]["default"] = "STEP_FAILED"
    _field(new_with_default, "kind")["type"]["default"] = "STEP_FAILED"
    assert registry.resolution_problems(registry.parse(new_with_default), registry.parse(old_with_default)) == []


def test_renaming_a_nested_record_is_caught() -> None:
    old = _raw("durable.engine.StepResult")
    new = copy.deepcopy(old)
    _field(new, "error")["type"][1]["name"] = "Failure"
    problems = registry.compatibility_problems(old, new)
    assert any("error" in p for p in problems), problems


def test_a_nullable_field_made_required_is_caught_even_if_samples_miss_null() -> None:
    """Static resolution finds the null branch with no counterpart, whatever the random samples hold."""
    old = _raw("durable.engine.StepResult")
    new = copy.deepcopy(old)
    _field(new, "output_json")["type"] = "string"
    _field(new, "output_json")["default"] = ""
    assert any(
        "output_json<null>" in p and "null cannot be read as string" in p
        for p in registry.resolution_problems(registry.parse(old), registry.parse(new))
    )


def test_changing_an_array_item_type_is_caught() -> None:
    old = _raw("durable.fnol.RoutedDecision")
    new = copy.deepcopy(old)
    _field(new, "reasons")["type"]["items"] = "int"
    problems = registry.compatibility_problems(old, new)
    assert any("reasons[]" in p for p in problems), problems


def test_the_compatibility_check_is_deterministic() -> None:
    old = _raw("durable.engine.StepCommand")
    new = copy.deepcopy(old)
    _field(new, "attempt")["type"] = "string"
    assert registry.compatibility_problems(old, new) == registry.compatibility_problems(old, new)
