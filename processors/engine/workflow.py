"""How a user declares a workflow: steps with dependencies (a DAG) and options."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from processors.engine.recorder import Recorder
from processors.models import ModelRequest, ModelResponse

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
class RetryPolicy:
    """How often and how patiently a step (or its compensation) is retried.

    Attempt ``n`` of a budget (1-based) that fails is followed, after
    ``initial_backoff_s * multiplier ** (n - 1)`` seconds capped at
    ``max_backoff_s``, by attempt ``n + 1``, up to ``max_attempts``. ``jitter``
    spreads each delay by up to that fraction either way, from a hash of the
    run id, step and attempt: the same run always waits the same delays, so a
    replay is exact. Errors whose type (or a base class) is named in
    ``non_retryable`` end the budget at once, as does ``StepFailure(retryable=False)``.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException] | str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def backoff_ms(self, run_id: str, step: str, attempt: int, nth: int) -> int:
        """Delay after the ``nth`` failed attempt of this budget (``attempt`` is its global number)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (nth - 1))
        digest = hashlib.sha256(f"{run_id}/{step}/{attempt}".encode()).digest()
        spread = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # uniform in [-1, 1)
        return max(0, round(base * (1 + self.jitter * spread) * 1000))

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` may be retried (budget permitting).

        Besides ``non_retryable``, an error that says ``retryable = False`` of
        itself (``StepFailure(retryable=False)``, a rejected model request) is not.
        """
        if getattr(exc, "retryable", True) is False:
            return False
        names = {cls.__name__ for cls in type(exc).__mro__} | {
            f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__
        }
        for kind in self.non_retryable:
            if isinstance(kind, str) and kind in names:
                return False
            if isinstance(kind, type) and isinstance(exc, kind):
                return False
        return True


Action = Literal["run", "compensate"]


@dataclass(frozen=True)
class StepContext:
    """What a step sees of its run: the run input and its dependencies' outputs.

    A compensation (``action == "compensate"``) sees the same, plus ``output``:
    what the step it undoes returned.

    The context is a step's only door to time, randomness and models:
    :meth:`now`, :meth:`random` and :meth:`model` record what they return,
    and a replay serves the recorded values back, so the step recomputes
    exactly what it computed. A step that reads the clock or calls a model
    any other way cannot be replayed exactly.
    """

    run_id: str
    workflow: str
    step: str
    attempt: int
    input: Mapping[str, Any]
    deps: Mapping[str, Mapping[str, Any]]
    action: Action = "run"
    output: Mapping[str, Any] | None = None
    run_started_at_ms: int = 0
    recorder: Recorder = field(default_factory=Recorder, repr=False, compare=False)

    def now(self) -> datetime:
        """The current time (UTC), recorded: a replay sees the time of the recorded attempt."""
        return self.recorder.now()

    def random(self) -> float:
        """A random float in [0, 1), recorded."""
        return self.recorder.random()

    async def model(self, request: ModelRequest) -> ModelResponse:
        """Call the worker's model client, recording the request and the response."""
        return await self.recorder.model(request)

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries of this attempt: ``run_id/step/attempt`` (``/compensate`` for undoing)."""
        base = f"{self.run_id}/{self.step}/{self.attempt}"
        return base if self.action == "run" else f"{base}/compensate"


@dataclass(frozen=True)
class Step:
    """One node of a workflow's DAG.

    ``local=True`` runs the step inside the orchestrator that owns the run
    (no command/result round trip over Kafka): for short, side-effect-free
    steps. Its result is made durable by the run's journal and changelog.

    ``timeout_s`` bounds each attempt: past it the attempt is cancelled and
    counts as failed (retryable). A synchronous handler runs in a thread so it
    cannot block the worker; a hung thread is abandoned, not killed.

    ``compensate`` undoes the step's effect if a later step of the run fails
    for good; compensations run in reverse order of completion, each under
    ``compensate_retry``.

    ``span`` names the step's trace spans (e.g. ``tool.vision``); default: its name.
    """

    name: str
    handler: StepHandler
    after: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 30.0
    local: bool = False
    compensate: StepHandler | None = None
    compensate_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5))
    span: str = ""

    @property
    def span_name(self) -> str:
        """The name of this step's trace spans (``span``, else the step's name)."""
        return self.span or self.name

    def policy(self, action: str) -> RetryPolicy:
        return self.compensate_retry if action == "compensate" else self.retry


@dataclass(frozen=True)
class Workflow:
    """A named DAG of steps, its input and output topics and its result.

    ``result`` builds the workflow's output from the steps' outputs when every
    step has succeeded; ``on_failure`` builds it when the run stops on a step
    that failed for good (after its compensations). Both must be
    deterministic functions of their arguments: the orchestrator calls them
    inside its pure transition.
    """

    name: str
    steps: tuple[Step, ...]
    input_topic: str
    input_schema: str
    output_topic: str
    output_schema: str
    run_id_of: Callable[[Mapping[str, Any]], str]
    result: Callable[[RunResult], JSON]
    on_failure: Callable[[RunFailure], JSON]
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
            by_name[step.name] = step
        object.__setattr__(self, "_by_name", by_name)

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def has_step(self, name: str) -> bool:
        return name in self._by_name


@dataclass(frozen=True)
class RunResult:
    """What ``Workflow.result`` turns into the run's output when every step succeeded.

    ``output_id`` is the id the output must carry (e.g. a decision id): the
    same for the same run and redrive ``generation``, so downstream dedupes.
    """

    run_id: str
    input: Mapping[str, Any]
    outputs: Mapping[str, JSON]
    at_ms: int
    output_id: str
    generation: int


@dataclass(frozen=True)
class RunFailure:
    """Why a run stopped, for ``Workflow.on_failure`` to turn into the run's output.

    ``outcome`` is COMPENSATED when every compensation it needed succeeded
    (at least one ran), FAILED otherwise. ``outputs`` holds every step that
    completed, undone or not: ``compensated`` says which were undone.
    """

    run_id: str
    input: Mapping[str, Any]
    step: str
    error_type: str
    error_message: str
    attempts: int
    outcome: Literal["COMPENSATED", "FAILED"]
    compensated: tuple[str, ...]
    compensation_failed: tuple[str, ...]
    outputs: Mapping[str, JSON]
    dead_letter_id: str
    at_ms: int
    output_id: str
    generation: int

    @property
    def reason(self) -> str:
        text = f"step {self.step} failed after {self.attempts} attempt(s): {self.error_type}: {self.error_message}"
        if self.compensated:
            text += f"; compensated: {', '.join(self.compensated)}"
        if self.compensation_failed:
            text += f"; compensation failed: {', '.join(self.compensation_failed)}"
        return text


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
