"""How a user declares a workflow: steps with dependencies (a DAG) and options."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
StepHandler = Callable[["StepContext"], Awaitable[JSON] | JSON]


class StepFailure(Exception):
    """Raise from a step to fail this attempt with a clear type and message.

    ``retryable=False`` tells the engine not to spend further attempts.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class StepContext:
    """What a step sees of its run: the run input and its dependencies' outputs."""

    run_id: str
    workflow: str
    step: str
    attempt: int
    input: Mapping[str, Any]
    deps: Mapping[str, Mapping[str, Any]]

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries of this attempt: ``run_id/step/attempt``."""
        return f"{self.run_id}/{self.step}/{self.attempt}"


@dataclass(frozen=True)
class Step:
    """One node of a workflow's DAG.

    ``local=True`` runs the step inside the orchestrator that owns the run
    (no command/result round trip over Kafka): for short, side-effect-free
    steps. Its result is made durable by the run's journal and changelog.
    """

    name: str
    handler: StepHandler
    after: tuple[str, ...] = ()
    max_attempts: int = 1
    timeout_s: float = 30.0
    local: bool = False


@dataclass(frozen=True)
class Workflow:
    """A named DAG of steps, its input and output topics and its result.

    ``result`` builds the workflow's output from the steps' outputs when every
    step has succeeded; ``on_failure`` builds it when the run fails. Both must
    be deterministic functions of their arguments: the orchestrator calls them
    inside its pure transition.
    """

    name: str
    steps: tuple[Step, ...]
    input_topic: str
    input_schema: str
    output_topic: str
    output_schema: str
    run_id_of: Callable[[Mapping[str, Any]], str]
    result: Callable[[str, Mapping[str, Any], Mapping[str, JSON], int], JSON]
    on_failure: Callable[[str, Mapping[str, Any], str, int], JSON]
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Step] = {}
        for step in self.steps:
            if step.name in by_name:
                raise ValueError(f"{self.name}: step {step.name!r} declared twice")
            for dep in step.after:
                if dep not in by_name:
                    raise ValueError(
                        f"{self.name}: step {step.name!r} depends on {dep!r}, which is not declared before it"
                    )
            if step.max_attempts < 1:
                raise ValueError(f"{self.name}: step {step.name!r} needs max_attempts >= 1")
            by_name[step.name] = step
        object.__setattr__(self, "_by_name", by_name)

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def has_step(self, name: str) -> bool:
        return name in self._by_name


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
