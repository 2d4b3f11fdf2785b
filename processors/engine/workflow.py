"""How a user declares a workflow: steps with dependencies (a DAG), their options, and what the edges need."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processors.engine.context import JSON, StepHandler
from processors.engine.evaluation import Evaluation
from processors.engine.intake import Intake
from processors.engine.retry import RetryPolicy
from processors.engine.settings import Setting
from processors.models import Simulation
from schemas import register


def describe_json(output: Mapping[str, Any]) -> str:
    """The default one-line description of an output: its JSON."""
    return json.dumps(output, separators=(",", ":"), sort_keys=True, default=str)


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

    ``evaluation`` marks a step that judges its run (an evaluator): it reads
    the step's output as an :class:`Evaluation`, which traces show.

    ``since`` patches a step in: it exists from that version of its workflow
    on. A run recorded on an earlier version the workflow ``continues`` goes
    on without it (and without the steps that depend on it).
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
    evaluation: Callable[[Mapping[str, Any]], Evaluation] | None = None
    since: str = ""

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
    that failed for good (after its compensations); ``on_pause``, if set,
    builds the output a run writes when it pauses (a step whose policy says
    ``on_exhausted="pause"`` failed for good: nothing undone, an operator
    decides), so downstream hears of the run before anyone acts; unset, a
    paused run writes nothing until it ends. All must be deterministic
    functions of their arguments: the orchestrator calls them inside its pure
    transition.

    What the edges take from it: ``schemas``, the directories of its Avro
    records (registered with the codec when the workflow is made); ``intake``,
    how an input object from a file or HTTP request is validated and
    tokenised (default: any valid record of ``input_schema``); ``describe``,
    one line for an output (what ``durable demo`` and ``durable trace``
    print); ``simulation``, how the local simulated model answers its model
    calls (default: generic answers); ``diff_ignores``, output fields that
    differ by nature between two runs of the same input (times, ids), which
    a window replay's diff leaves out.

    ``settings``: the values outside a step's input that shape what it does
    (a failure rate, a budget table), each read from the environment; every
    attempt records them and a replay serves them back
    (:mod:`processors.engine.settings`). ``version``: what the workflow's
    author calls this code, recorded with every attempt so a replay says
    when it runs another, and every run records the version it started on
    (:mod:`processors.engine.versions`). ``continues``: the earlier versions,
    oldest first, whose in-flight runs this declaration also finishes: their
    runs skip the steps declared ``since`` a later version (a patch), instead
    of a second copy of the workflow being loaded beside this one.
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
    on_pause: Callable[[RunPaused], JSON] | None = None
    schemas: tuple[Path, ...] = ()
    intake: Intake | None = None
    describe: Callable[[Mapping[str, Any]], str] = describe_json
    simulation: Simulation | None = None
    diff_ignores: frozenset[str] = frozenset()
    settings: tuple[Setting, ...] = ()
    version: str = ""
    continues: tuple[str, ...] = ()
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
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names) or any(n.startswith(("workflow.", "model.")) for n in names):
            raise ValueError(f"{self.name}: setting names must be unique and not start with 'workflow.' or 'model.'")
        history = (*self.continues, self.version)
        patched = [s for s in self.steps if s.since]
        if (patched or self.continues) and not self.version:
            raise ValueError(f"{self.name}: a workflow with patched steps or 'continues' must declare its version")
        if any(s.since not in history for s in patched):
            raise ValueError(f"{self.name}: a step's 'since' must be one of its versions {list(history)}")
        object.__setattr__(self, "_by_name", by_name)
        for directory in self.schemas:
            register(directory)

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def has_step(self, name: str) -> bool:
        return name in self._by_name

    def steps_for(self, version: str | None) -> tuple[Step, ...]:
        """The steps a run recorded on ``version`` has: all, less those patched in since a later version.

        A step that depends on a left-out step is left out too. A version this declaration does not
        continue (its own, or none recorded) has every step.
        """
        history = (*self.continues, self.version)
        if not version or version not in history or version == self.version:
            return self.steps
        at = history.index(version)
        kept: list[Step] = []
        names: set[str] = set()
        for step in self.steps:
            if (not step.since or history.index(step.since) <= at) and all(d in names for d in step.after):
                kept.append(step)
                names.add(step.name)
        return tuple(kept)


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
    (at least one ran; for a rollback, also when none was needed), FAILED otherwise.
    ``retracted_by`` is set when a COMPLETED run was rolled back on an operator's
    word: its output should then say the earlier decision is RETRACTED, and why. ``outputs`` holds every step that
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
    retracted_by: str | None = None
    retract_reason: str = ""

    @property
    def retracted(self) -> bool:
        """Whether the run had COMPLETED and an operator rolled it back (``durable runs rollback``)."""
        return self.retracted_by is not None

    @property
    def reason(self) -> str:
        if self.retracted:
            text = f"retracted by {self.retracted_by or 'an operator'}: {self.retract_reason}"
            if self.compensated:
                text += f"; compensated: {', '.join(self.compensated)}"
            else:
                text += "; nothing to undo"
            if self.compensation_failed:
                text += f"; compensation failed: {', '.join(self.compensation_failed)}"
            return text
        if self.step and self.attempts:
            text = f"step {self.step} failed after {self.attempts} attempt(s): {self.error_type}: {self.error_message}"
        elif self.step:
            text = f"step {self.step} failed: {self.error_type}: {self.error_message}"
        else:
            text = f"run failed: {self.error_type}: {self.error_message}"
        if self.compensated:
            text += f"; compensated: {', '.join(self.compensated)}"
        if self.compensation_failed:
            text += f"; compensation failed: {', '.join(self.compensation_failed)}"
        return text


@dataclass(frozen=True)
class RunPaused:
    """Why a run paused, for ``Workflow.on_pause`` to turn into the output it writes meanwhile.

    Nothing was undone: ``outputs`` holds every step that completed. The run waits for an operator:
    ``durable dlq redrive`` of ``dead_letter_id`` resumes it, ``durable runs compensate`` undoes it; either
    writes the run's next output, under a new ``output_id``.
    """

    run_id: str
    input: Mapping[str, Any]
    step: str
    error_type: str
    error_message: str
    attempts: int
    outputs: Mapping[str, JSON]
    dead_letter_id: str
    at_ms: int
    output_id: str
    generation: int

    @property
    def reason(self) -> str:
        return (
            f"step {self.step} failed after {self.attempts} attempt(s): {self.error_type}: {self.error_message}; "
            f"run paused (dead letter {self.dead_letter_id})"
        )
