"""Replay: re-execute a recorded run's step attempts with the current code, and compare.

Every attempt of a run is in its journal: the exact input (STEP_SCHEDULED or
COMPENSATION_SCHEDULED), the output or error, and every outside value it used
(``recorded_json``: clock, random, model responses). Replaying an attempt
runs the step's current handler on that input, serving those values back,
and compares what comes out with what came out then:

- ``same``: the same output;
- ``different``: another output, or an output where there was an error (fixed);
- ``failure reproduced``: the same error type and message;
- ``new failure``: an error where there was an output, or another error.

Each attempt also runs under the settings it was recorded with (failure
rates, budgets, the model's name and price: ``settings_json``, see
:mod:`processors.engine.settings`), not the replaying machine's;
:func:`setting_differences` lists where the two differ, for the replay to
say so before it runs. An attempt journaled before settings were captured
runs under this machine's.

Nothing here writes anywhere: replay reads a journal and runs code.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from processors.engine.canonical import canonical_json
from processors.engine.chain import TRUST_FIELDS
from processors.engine.execute import run_step
from processors.engine.recorder import Recorder
from processors.engine.settings import Difference, differences
from processors.engine.snapshot import capture
from processors.engine.status import ENDINGS, STATUS_AFTER
from processors.engine.transition import output_id
from processors.engine.workflow import RunResult, Workflow
from processors.models import ModelClient
from schemas.models import JournalEvent, JournalKind, RunStatus, StepCommand

Verdict = Literal["same", "different", "failure reproduced", "new failure"]

_SCHEDULED = {JournalKind.STEP_SCHEDULED: "run", JournalKind.COMPENSATION_SCHEDULED: "compensate"}
_SUCCEEDED = {JournalKind.STEP_SUCCEEDED: "run", JournalKind.COMPENSATION_SUCCEEDED: "compensate"}
_FAILED = {JournalKind.STEP_FAILED: "run", JournalKind.COMPENSATION_FAILED: "compensate"}


class NotReplayable(ValueError):
    """The journal or file does not describe a run that can be replayed."""


@dataclass(frozen=True)
class RecordedAttempt:
    """One attempt as the journal recorded it."""

    step: str
    action: str
    attempt: int
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    recorded: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.output is not None or self.error is not None

    @property
    def label(self) -> str:
        return self.step if self.action == "run" else f"{self.step} (compensate)"


@dataclass(frozen=True)
class RecordedRun:
    """A run's captured inputs and outcomes: what replay re-executes, and what `runs export` writes."""

    run_id: str
    workflow: str
    input: dict[str, Any]
    attempts: list[RecordedAttempt]
    status: str
    output: dict[str, Any] | None
    ended_at_ms: int | None
    version: str | None = None  # the workflow version it started on (None: recorded before versions)

    @property
    def settings_recorded(self) -> bool:
        """Whether the journal recorded the settings of its attempts (it did not before settings capture)."""
        return any(a.settings is not None for a in self.attempts if a.finished)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "durable.run-export/1",
                "run_id": self.run_id,
                "workflow": self.workflow,
                "input": self.input,
                "status": self.status,
                "output": self.output,
                "ended_at_ms": self.ended_at_ms,
                "version": self.version,
                "attempts": [a.__dict__ for a in self.attempts],
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RecordedRun:
        try:
            data = json.loads(text)
            if data.get("format") != "durable.run-export/1":
                raise NotReplayable("not a run export (format durable.run-export/1)")
            return cls(
                run_id=data["run_id"],
                workflow=data["workflow"],
                input=data["input"],
                attempts=[RecordedAttempt(**a) for a in data["attempts"]],
                status=data["status"],
                output=data["output"],
                ended_at_ms=data["ended_at_ms"],
                version=data.get("version"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise NotReplayable(f"not a run export: {exc}") from exc


def recorded_run(events: Iterable[JournalEvent]) -> RecordedRun:
    """Rebuild a run's attempts from its journal events (any order; each once)."""
    ordered = sorted({e.seq: e for e in events}.values(), key=lambda e: e.seq)
    if not ordered or ordered[0].kind is not JournalKind.RUN_STARTED:
        raise NotReplayable("the journal does not start with RUN_STARTED")
    first = ordered[0]
    attempts: dict[tuple[str, str, int], RecordedAttempt] = {}
    status, output, ended = RunStatus.RUNNING, None, None
    for e in ordered:
        detail = json.loads(e.detail_json) if e.detail_json else None
        recorded = json.loads(e.recorded_json) if e.recorded_json else []
        settings = json.loads(e.settings_json) if e.settings_json else None
        if e.kind in _SCHEDULED and e.step is not None and e.attempt is not None:
            key = (e.step, _SCHEDULED[e.kind], e.attempt)
            attempts[key] = RecordedAttempt(e.step, key[1], e.attempt, detail or {})
        elif e.kind in _SUCCEEDED or e.kind in _FAILED:
            action = _SUCCEEDED.get(e.kind) or _FAILED[e.kind]
            key = (e.step or "", action, e.attempt or 0)
            if key in attempts:
                ok = e.kind in _SUCCEEDED
                attempts[key] = RecordedAttempt(
                    key[0],
                    action,
                    key[2],
                    attempts[key].input,
                    output=detail if ok else None,
                    error=None if ok else detail,
                    recorded=recorded,
                    settings=settings,
                )
        elif e.kind in ENDINGS:
            ended = e.at_ms
            output = detail if e.kind is JournalKind.RUN_COMPLETED else (detail or {}).get("output")
        elif e.kind is JournalKind.RUN_PAUSED and (detail or {}).get("output") is not None:
            output = (detail or {})["output"]  # what the paused run wrote downstream (Workflow.on_pause)
        status = STATUS_AFTER.get(e.kind, status)
    return RecordedRun(
        run_id=first.run_id,
        workflow=first.workflow,
        input=json.loads(first.detail_json or "{}"),
        attempts=list(attempts.values()),
        status=status.value,
        output=output,
        ended_at_ms=ended,
        version=first.workflow_version,
    )


@dataclass(frozen=True)
class AttemptReplay:
    """One attempt replayed: the verdict, what the current code gave, and a readable diff."""

    recorded: RecordedAttempt
    verdict: Verdict
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    diff: list[str]


@dataclass(frozen=True)
class RunReplay:
    """A whole run replayed."""

    run: RecordedRun
    attempts: list[AttemptReplay]
    skipped: list[RecordedAttempt]
    would_complete: bool
    result: dict[str, Any] | None

    @property
    def differences(self) -> int:
        return sum(1 for a in self.attempts if a.verdict in ("different", "new failure"))

    @property
    def reproduced(self) -> int:
        return sum(1 for a in self.attempts if a.verdict == "failure reproduced")

    @property
    def exit_code(self) -> int:
        """0: all same; 1: differences (or new failures); 3: failures reproduced and nothing different."""
        if self.differences:
            return 1
        return 3 if self.reproduced else 0


def _error_summary(error: Mapping[str, Any] | None) -> str:
    if error is None:
        return ""
    return f"{error.get('type')}: {error.get('message')}"


def _pretty(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def compare(recorded: RecordedAttempt, output: dict[str, Any] | None, error: dict[str, Any] | None) -> AttemptReplay:
    """The verdict on one attempt, with a unified diff where the outcome changed."""
    was = recorded.output if recorded.error is None else {"error": _error_summary(recorded.error)}
    now = output if error is None else {"error": _error_summary(error)}
    diff = list(difflib.unified_diff(_pretty(was), _pretty(now), "recorded", "replayed", lineterm="", n=1))
    verdict: Verdict
    if recorded.error is None:
        verdict = "new failure" if error is not None else ("same" if not diff else "different")
    elif error is None:
        verdict = "different"
    else:
        same = (recorded.error.get("type"), recorded.error.get("message")) == (error.get("type"), error.get("message"))
        verdict = "failure reproduced" if same else "new failure"
    return AttemptReplay(recorded, verdict, output, error, [] if verdict in ("same", "failure reproduced") else diff)


async def replay_attempt(
    wf: Workflow,
    run_id: str,
    recorded: RecordedAttempt,
    *,
    live: bool = False,
    models: ModelClient | None = None,
) -> AttemptReplay:
    """Run one recorded attempt with the current code of ``wf`` and compare."""
    spec = wf.step(recorded.step) if wf.has_step(recorded.step) else None
    command = StepCommand(
        command_id=f"{run_id}/{recorded.step}/{recorded.attempt}/replay",
        run_id=run_id,
        workflow=wf.name,
        step=recorded.step,
        attempt=recorded.attempt,
        input_json=canonical_json(recorded.input),
        scheduled_at_ms=0,
        timeout_ms=int((spec.timeout_s if spec else 30.0) * 1000),
        action=recorded.action,
    )
    recorder = Recorder(models=models, recorded=None if live else recorded.recorded, live=live)
    result = await run_step({wf.name: wf}, command, "replay", recorder=recorder, settings=recorded.settings)
    output = json.loads(result.output_json) if result.output_json is not None else None
    error = result.error.model_dump(mode="json") if result.error is not None else None
    return compare(recorded, output, error)


def setting_differences(run: RecordedRun, wf: Workflow, env: Mapping[str, str] | None = None) -> list[Difference]:
    """The settings ``run``'s finished attempts were recorded under that differ from this machine's (``env``).

    Empty when they agree, and when no attempt recorded any (a journal older
    than settings capture: see :attr:`RecordedRun.settings_recorded`).
    """
    snapshots = [a.settings for a in run.attempts if a.finished and a.settings is not None]
    return differences(snapshots, capture(wf, env)) if snapshots else []


async def replay_run(
    run: RecordedRun, wf: Workflow, *, live: bool = False, models: ModelClient | None = None
) -> RunReplay:
    """Replay every finished attempt of ``run``; say whether the run would now complete, and with what."""
    done = []
    for attempt in run.attempts:
        if attempt.finished:
            done.append(await replay_attempt(wf, run.run_id, attempt, live=live, models=models))
    last: dict[str, AttemptReplay] = {}
    for replayed in done:
        if replayed.recorded.action == "run":
            last[replayed.recorded.step] = replayed
    outputs = {name: r.output for name, r in last.items() if r.error is None and r.output is not None}
    would_complete = all(s.name in outputs for s in wf.steps_for(run.version))
    result = None
    if would_complete:
        run_result = RunResult(run.run_id, run.input, outputs, run.ended_at_ms or 0, output_id(run.run_id), 0)
        result = wf.result(run_result)
    skipped = [a for a in run.attempts if not a.finished]
    return RunReplay(run, done, skipped, would_complete, result)


# ---------------------------------------------------------------- outputs of many runs (sandbox replays)

DiffKind = Literal["same", "changed", "missing", "new"]


@dataclass(frozen=True)
class OutputDiff:
    """One run's output, old against new."""

    run_id: str
    kind: DiffKind
    changes: dict[str, tuple[Any, Any]]


def diff_outputs(
    old: Mapping[str, Mapping[str, Any]],
    new: Mapping[str, Mapping[str, Any]],
    ignore: frozenset[str] = frozenset(),
) -> list[OutputDiff]:
    """Outputs by run id, compared field by field (``ignore``: fields that differ by nature, e.g. times).

    The signature fields (:data:`processors.engine.chain.TRUST_FIELDS`) are never compared: a replay's
    journal differs in its times, so its chain head and signature do too.
    """
    ignore = ignore | frozenset(TRUST_FIELDS)
    out = []
    for run_id in sorted(set(old) | set(new)):
        if run_id not in new:
            out.append(OutputDiff(run_id, "missing", {}))
        elif run_id not in old:
            out.append(OutputDiff(run_id, "new", {}))
        else:
            a, b = old[run_id], new[run_id]
            changes = {
                k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k) != b.get(k)
            }
            out.append(OutputDiff(run_id, "changed" if changes else "same", changes))
    return out
