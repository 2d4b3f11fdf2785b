"""The registry of published schema versions, and the compatibility rule between them.

Every version of a record schema that may have been written to Kafka is kept,
frozen, in ``versions/<Name>.<fingerprint>.avsc`` beside the current schemas
(``schemas/versions/`` for the engine's records, ``schemas/fnol/versions/``
for FNOL's); the codec reads old records with them. ``<fingerprint>`` is the schema's CRC-64-AVRO (Rabin)
fingerprint over its parsing canonical form, as 16 hex digits of the 8 bytes
in the order the Avro single-object header stores them (little endian), which
is what ``fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")`` prints.

The rule: a current schema must be compatible with every frozen version of
the same record, in the record's mode (:data:`MODES`). FULL, the default: data
written with the old version is readable with the current one (backward) and
data written with the current one is readable with the old one (forward).
BACKWARD, for records only the engine's own workers read back (the run
journal and the run table): the current version reads all old data, so a
namespace's workers are upgraded together (stop all, start the new version),
not one by one. :func:`compatibility_problems` checks each direction twice
over: statically, with the Avro spec's schema resolution rules, and by
resolving seeded sample records with fastavro.

Commands::

    python -m schemas.registry freeze   # publish (freeze) every current schema not yet frozen
    python -m schemas.registry check    # list unfrozen or incompatible schemas; exit 1 if any
"""

from __future__ import annotations

import copy
import io
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import fastavro
from fastavro.schema import parse_schema
from fastavro.utils import generate_many

from schemas.codec import SCHEMA_DIR, VERSIONS_DIR, load_version

SAMPLES = 100
SEED = 20261127

# Avro spec, "Schema Resolution": writer type -> reader types it promotes to.
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
NAMED = {"record", "error", "enum", "fixed"}

Mode = Literal["FULL", "BACKWARD"]

# Records read back only by the engine, whose enums grew (retries, compensation,
# redrive): old workers cannot read their new symbols, so upgrades stop a
# namespace's workers together. Every record users produce or consume stays FULL.
MODES: dict[str, Mode] = {
    "durable.engine.JournalEvent": "BACKWARD",
    "durable.engine.RunState": "BACKWARD",
}


# Frozen versions whose readers cannot read what the current version writes, by decision: consumers of these
# records upgrade before the new data can appear. RoutedDecision's DecisionStatus gained RETRACTED (written only
# when an operator runs `durable runs rollback`), which an enum without a default cannot take in; the current
# version declares a default (REVIEW), so symbols added after it stay forward compatible. Backward is still checked.
CONSUMERS_FIRST: dict[str, frozenset[str]] = {
    "durable.fnol.RoutedDecision": frozenset({"17e1f4f51cb61d28", "70b5e5179e363259"}),
}


def mode_of(name: str, fingerprint: str | None = None) -> Mode:
    """The compatibility mode of a record against one frozen version (FULL unless listed in MODES/CONSUMERS_FIRST)."""
    if fingerprint is not None and fingerprint in CONSUMERS_FIRST.get(name, frozenset()):
        return "BACKWARD"
    return MODES.get(name, "FULL")


@dataclass(frozen=True)
class Version:
    """One schema file: its record's full name, fingerprint and parsed form."""

    name: str
    fingerprint: str
    parsed: dict[str, Any]
    path: Path

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def frozen_file_name(self) -> str:
        return f"{self.short_name}.{self.fingerprint}.avsc"


def parse(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema parsed by fastavro (names fully qualified), without fastavro's write hints."""
    return cast(dict[str, Any], parse_schema(copy.deepcopy(schema), _write_hint=False, _force=True))


def load(path: Path) -> Version:
    # The codec parses and fingerprints; the registry names versions by the hex.
    version = load_version(path)
    return Version(version.name, version.fingerprint.hex(), version.parsed, path)


def current(schema_dir: Path | None = None) -> dict[str, Version]:
    """The current version of every schema, by full name."""
    schema_dir = schema_dir or SCHEMA_DIR
    return {v.name: v for v in (load(p) for p in sorted(schema_dir.glob("*.avsc")))}


def frozen(versions_dir: Path | None = None) -> list[Version]:
    """Every frozen (published) version."""
    versions_dir = versions_dir or VERSIONS_DIR
    if not versions_dir.is_dir():
        return []
    return [load(p) for p in sorted(versions_dir.glob("*.avsc"))]


def freeze(schema_dir: Path | None = None, versions_dir: Path | None = None) -> list[Path]:
    """Publish every current schema whose fingerprint is not frozen yet; returns the files written.

    The file is a verbatim copy of the current ``.avsc`` (defaults and docs included).
    """
    versions_dir = versions_dir or VERSIONS_DIR
    versions_dir.mkdir(parents=True, exist_ok=True)
    known = {v.fingerprint for v in frozen(versions_dir)}
    written = []
    for version in current(schema_dir).values():
        if version.fingerprint in known:
            continue
        target = versions_dir / version.frozen_file_name
        target.write_bytes(version.path.read_bytes())
        written.append(target)
    return written


def unfrozen(schema_dir: Path | None = None, versions_dir: Path | None = None) -> list[Version]:
    """Current schemas whose fingerprint is not among the frozen versions."""
    known = {v.fingerprint for v in frozen(versions_dir)}
    return [v for v in current(schema_dir).values() if v.fingerprint not in known]


def check(schema_dir: Path | None = None, versions_dir: Path | None = None) -> list[str]:
    """Every problem with the published versions: unfrozen schemas, misnamed frozen files, incompatibilities."""
    problems = [
        f"{v.name} ({v.path.name}): fingerprint {v.fingerprint} is not frozen; run `python -m schemas.registry freeze`"
        for v in unfrozen(schema_dir, versions_dir)
    ]
    now = current(schema_dir)
    for old in frozen(versions_dir):
        if old.path.name != old.frozen_file_name:
            problems.append(
                f"{old.path.name}: its content has fingerprint {old.fingerprint}, expected {old.frozen_file_name}"
            )
        new = now.get(old.name)
        if new is not None and new.fingerprint != old.fingerprint:
            found = compatibility_problems(old.parsed, new.parsed, mode=mode_of(old.name, old.fingerprint))
            problems += [f"{old.path.name}: {p}" for p in found]
    return problems


# ---------------------------------------------------------------- compatibility


def compatibility_problems(
    old: dict[str, Any], new: dict[str, Any], samples: int = SAMPLES, seed: int = SEED, mode: Mode = "FULL"
) -> list[str]:
    """Why ``new`` is not compatible with ``old`` in ``mode`` (empty list: it is).

    Backward (``new`` reads what ``old`` wrote) and, for FULL, forward (``old``
    reads what ``new`` wrote), each by the Avro resolution rules and by
    resolving ``samples`` records generated (seeded, so the answer is
    deterministic).
    """
    old_p, new_p = parse(old), parse(new)
    problems = [f"backward (new reads old data): {p}" for p in resolution_problems(old_p, new_p)]
    problems += [f"backward (new reads old data): {p}" for p in sample_problems(old_p, new_p, samples, seed)]
    if mode == "FULL":
        problems += [f"forward (old reads new data): {p}" for p in resolution_problems(new_p, old_p)]
        problems += [f"forward (old reads new data): {p}" for p in sample_problems(new_p, old_p, samples, seed)]
    return problems


def seeded_records(schema: dict[str, Any], count: int, seed: int) -> list[Any]:
    """``count`` records generated by fastavro for ``schema``, the same for the same seed.

    fastavro generates with the global ``random``; its state is restored afterwards.
    """
    state = random.getstate()
    try:
        random.seed(seed)
        return list(generate_many(schema, count))
    finally:
        random.setstate(state)


def sample_problems(writer: dict[str, Any], reader: dict[str, Any], samples: int, seed: int) -> list[str]:
    """Write seeded samples with ``writer``, read them resolved to ``reader``; the first failure."""
    for n, record in enumerate(seeded_records(writer, samples, seed)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # any failure to resolve is the answer
            return [f"sample {n} (seed {seed}) not readable: {type(exc).__name__}: {exc}"]
        if buf.tell() != len(buf.getvalue()):
            return [f"sample {n} (seed {seed}): reader left {len(buf.getvalue()) - buf.tell()} bytes unread"]
    return []


def resolution_problems(writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    """Where the Avro spec's schema resolution of ``writer`` data into ``reader`` fails."""
    resolver = _Resolver(_names(writer), _names(reader))
    resolver.resolve(writer, reader, reader.get("name", "(root)") if isinstance(reader, dict) else "(root)")
    return resolver.problems


def _names(schema: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in _walk(schema):
        if isinstance(node, dict) and node.get("type") in NAMED:
            out[node["name"]] = node
    return out


def _walk(schema: Any) -> Iterator[Any]:
    yield schema
    if isinstance(schema, list):
        for branch in schema:
            yield from _walk(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error"):
            for f in schema["fields"]:
                yield from _walk(f["type"])
        elif kind == "array":
            yield from _walk(schema["items"])
        elif kind == "map":
            yield from _walk(schema["values"])
        elif isinstance(kind, dict | list):
            yield from _walk(kind)


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema["type"]
        return _kind(kind) if isinstance(kind, dict | list) else str(kind)
    return str(schema)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Resolver:
    def __init__(self, writer_names: dict[str, Any], reader_names: dict[str, Any]) -> None:
        self.wn = writer_names
        self.rn = reader_names
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def _deref(self, schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema in names:
            return names[schema]
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return self._deref(schema["type"], names)
        return schema

    def matches(self, writer: Any, reader: Any) -> bool:
        """Does ``writer`` resolve into ``reader`` without problems (no side effects)?"""
        probe = _Resolver(self.wn, self.rn)
        probe._seen = set(self._seen)
        probe.resolve(writer, reader, "")
        return not probe.problems

    def resolve(self, writer: Any, reader: Any, path: str) -> None:
        w, r = self._deref(writer, self.wn), self._deref(reader, self.rn)
        wk, rk = _kind(w), _kind(r)
        if wk == "union":
            for branch in w:
                self.resolve(branch, r, f"{path}<{_kind(self._deref(branch, self.wn))}>")
            return
        if rk == "union":
            # The first reader branch that matches is used; one is enough.
            if not any(self.matches(w, branch) for branch in r):
                self.problems.append(f"{path}: writer type {wk} matches no branch of the reader's union")
            return
        if wk != rk:
            if rk not in PROMOTIONS.get(wk, frozenset()):
                self.problems.append(f"{path}: writer type {wk} cannot be read as {rk}")
            return
        if wk in NAMED and not self._same_name(w, r):
            self.problems.append(f"{path}: writer {wk} {w['name']} does not match reader {wk} {r['name']}")
            return
        if wk in ("record", "error"):
            self._record(w, r, path)
        elif wk == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problems.append(f"{path}: reader enum has no symbol {missing} and no default")
        elif wk == "fixed" and w["size"] != r["size"]:
            self.problems.append(f"{path}: fixed size {w['size']} cannot be read as size {r['size']}")
        elif wk == "array":
            self.resolve(w["items"], r["items"], f"{path}[]")
        elif wk == "map":
            self.resolve(w["values"], r["values"], f"{path}{{}}")

    def _same_name(self, w: dict[str, Any], r: dict[str, Any]) -> bool:
        # Avro spec: named types match on their unqualified name (or a reader alias).
        accepted = {_short(r["name"])} | {_short(a) for a in r.get("aliases", [])}
        return _short(w["name"]) in accepted

    def _record(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        key = (w["name"], r["name"])
        if key in self._seen:  # recursive types: already being checked
            return
        self._seen.add(key)
        writer_fields = {f["name"]: f for f in w["fields"]}
        for field in r["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            source = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path}.{field['name']}"
            if source is not None:
                self.resolve(source["type"], field["type"], where)
            elif "default" not in field:
                self.problems.append(f"{where}: reader field is not in the writer's data and has no default")


# ---------------------------------------------------------------- command line


def schema_sets() -> list[tuple[Path, Path]]:
    """(current schemas, frozen versions) of every schema directory this repository publishes.

    The engine's (``schemas/``; module globals, so tests can point them
    elsewhere) and each sub-directory of it that holds schemas (a workload's
    records, e.g. ``schemas/fnol/``).
    """
    subdirs = sorted(
        d for d in SCHEMA_DIR.iterdir() if d.is_dir() and d.name != "versions" and any(d.glob("*.avsc"))
    )
    return [(SCHEMA_DIR, VERSIONS_DIR), *((d, d / "versions") for d in subdirs)]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    sets = schema_sets()
    if args == ["freeze"]:
        problems = []
        for schema_dir, versions_dir in sets:
            for path in freeze(schema_dir, versions_dir):
                print(f"froze {path}")
            problems += check(schema_dir, versions_dir)
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args == ["check"]:
        problems = [p for schema_dir, versions_dir in sets for p in check(schema_dir, versions_dir)]
        for problem in problems:
            print(problem)
        if not problems:
            schemas = sum(len(current(s)) for s, _ in sets)
            versions = sum(len(frozen(v)) for _, v in sets)
            print(f"ok: {schemas} current schemas frozen and compatible with {versions} versions")
        return 1 if problems else 0
    print("usage: python -m schemas.registry {freeze|check}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
