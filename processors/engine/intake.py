"""How a workflow declares its way in: the :class:`Intake` it brings (validation, tokenising, samples).

The functions that apply it to inputs from outside are in :mod:`processors.engine.inputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_INPUT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Intake:
    """A workflow's way in.

    ``accept`` turns one JSON object into the workflow's input record (a dict
    of its input schema), validated, with personal data replaced by tokens; it
    raises :class:`InputRejected` naming the field. ``check`` holds an input
    record as it is on Kafka to the same contract (the orchestrator applies
    it to every input, whoever wrote it; a record that fails it is
    dead-lettered). ``samples``: example inputs, one JSON object per line
    (``durable demo`` runs them). ``max_bytes``: the largest input taken, at
    the edge and on Kafka.
    """

    accept: Callable[[Mapping[str, Any]], dict[str, Any]]
    check: Callable[[Mapping[str, Any]], None] | None = None
    samples: Path | None = None
    max_bytes: int = MAX_INPUT_BYTES
