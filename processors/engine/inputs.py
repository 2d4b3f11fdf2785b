"""How a workflow's inputs enter from outside: one JSON object (a line of a file, an HTTP body) at a time.

Every edge (``durable produce``, the demo, the HTTP gateway) goes through
:func:`accept`: the workflow's :class:`~processors.engine.intake.Intake`
validates the object against its contract and replaces personal data by
tokens; a workflow without one takes objects that are valid records of its
input schema as they are. A rejected input never reaches Kafka and says why
(:class:`InputRejected`, naming the field). Pure: no Kafka here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from processors.engine.errors import InputRejected
from processors.engine.intake import MAX_INPUT_BYTES
from processors.engine.workflow import Workflow
from schemas import encode


@dataclass(frozen=True)
class Accepted:
    """An input that met the contract: its run id and the record to produce."""

    line_no: int
    run_id: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """An input that did not, and why."""

    line_no: int
    reason: str


MAX_DEPTH = 32
# Control characters other than tab, newline and carriage return: no report needs them, and they corrupt
# logs and terminals downstream (a NUL ends C strings; an ESC rewrites a terminal).
_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F]) - {"\t", "\n", "\r"}


def screen(data: Any, path: str = "", depth: int = 0) -> None:
    """Whatever the workflow: no object nested deeper than :data:`MAX_DEPTH`, no control character in a string.

    Raises :class:`InputRejected` naming the field (dotted path; list items by index).
    """
    if depth > MAX_DEPTH:
        raise InputRejected(f"{path or '(input)'}: nested deeper than {MAX_DEPTH} levels", path or None)
    if isinstance(data, str):
        if not _CONTROL.isdisjoint(data):
            raise InputRejected(f"{path or '(input)'}: contains a control character", path or None)
    elif isinstance(data, Mapping):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and not _CONTROL.isdisjoint(key):
                raise InputRejected("a field name contains a control character", path or None)
            screen(value, where, depth + 1)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            screen(value, f"{path}.{i}" if path else str(i), depth + 1)


def accept(wf: Workflow, data: Mapping[str, Any]) -> Accepted:
    """Validate one input object for ``wf``; returns it accepted (line 0) or raises :class:`InputRejected`."""
    screen(data)
    if wf.intake is not None:
        try:
            record = wf.intake.accept(data)
        except RecursionError:
            raise InputRejected("nested too deeply") from None
    else:
        record = dict(data)
        try:
            encode(wf.input_schema, record)  # a record the input schema cannot encode is not an input
        except Exception as exc:
            raise InputRejected(f"not a {wf.input_schema} record: {type(exc).__name__}: {exc}") from None
    try:
        run_id = wf.run_id_of(record)
    except Exception as exc:
        raise InputRejected(f"cannot derive a run id: {type(exc).__name__}: {exc}") from None
    return Accepted(0, run_id, record)


def parse_lines(wf: Workflow, lines: Iterable[str | bytes]) -> Iterator[Accepted | Rejected]:
    """Validate JSON lines one by one (blank lines are skipped); each bad line says why."""
    limit = wf.intake.max_bytes if wf.intake is not None else MAX_INPUT_BYTES
    for n, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        if len(text.encode()) > limit:
            yield Rejected(n, f"line is larger than {limit} bytes")
            continue
        try:
            data = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield Rejected(n, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            yield Rejected(n, "JSON nested too deeply")
            continue
        if not isinstance(data, dict):
            yield Rejected(n, f"expected a JSON object, got {type(data).__name__}")
            continue
        try:
            accepted = accept(wf, data)
        except InputRejected as exc:
            yield Rejected(n, str(exc))
            continue
        yield Accepted(n, accepted.run_id, accepted.record)
