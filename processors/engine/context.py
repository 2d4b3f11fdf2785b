"""What a step's code sees: its :class:`StepContext`, the only door to time, randomness and models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from processors.engine.recorder import Recorder
from processors.engine.settings import Setting
from processors.models import ModelRequest, ModelResponse

JSON = dict[str, Any]
StepHandler = Callable[["StepContext"], Awaitable[JSON] | JSON]
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

    ``settings`` is the snapshot of the workflow's settings the attempt runs
    under (the worker's, live; the recorded one, on replay): a step reads
    them with :meth:`setting`, never from the environment.
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
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def setting(self, setting: Setting) -> Any:
        """The value of ``setting`` this attempt runs under (a context built without a snapshot: this process's)."""
        return self.settings[setting.name] if setting.name in self.settings else setting.current()

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
