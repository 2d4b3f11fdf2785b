"""The deploy check: would recorded runs diverge under new workflow code?

Before a deploy, recorded runs (finished and in flight) are replayed against
the new declaration with the machinery of :mod:`processors.engine.replay`
(recorded model answers, clock and randomness served back). A run diverges
when:

- a step it recorded no longer exists (removed or renamed);
- a step it recorded now depends on other steps than the ones whose outputs
  its recorded input carries (the DAG changed under it);
- an attempt it finished gives another output or another error for the same
  recorded input, or calls outside the engine in another order than recorded
  (a non-deterministic call: the recorder refuses it, a new failure).

A step the new code adds, which no recorded step depends on, is no
divergence: a run started on the old version never reaches it (it finishes on
its own version), and a run on the new one runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.engine.replay import RecordedRun, RunReplay, replay_run
from processors.engine.workflow import Workflow
from processors.models import ModelClient


@dataclass(frozen=True)
class RunCheck:
    """One recorded run checked against new code: why it would diverge (empty: it would not)."""

    run_id: str
    status: str
    reasons: list[str]
    replayed: RunReplay | None

    @property
    def diverges(self) -> bool:
        return bool(self.reasons)


def shape_problems(run: RecordedRun, wf: Workflow) -> list[str]:
    """What in the declaration no longer fits the steps ``run`` recorded (removed steps, changed dependencies)."""
    problems: list[str] = []
    seen: set[str] = set()
    for attempt in run.attempts:
        if attempt.step in seen:
            continue
        seen.add(attempt.step)
        if not wf.has_step(attempt.step):
            problems.append(f"step {attempt.step!r} was recorded but no longer exists in {wf.name}")
            continue
        now = set(wf.step(attempt.step).after)
        recorded = set(attempt.input.get("deps", {}))
        if now != recorded:
            problems.append(
                f"step {attempt.step!r} now depends on {sorted(now)}; it was recorded depending on {sorted(recorded)}"
            )
    return problems


async def check_run(run: RecordedRun, wf: Workflow, models: ModelClient | None = None) -> RunCheck:
    """Check one recorded run against ``wf``: its shape first, then every finished attempt replayed."""
    reasons = shape_problems(run, wf)
    if reasons:  # replaying steps that no longer exist would only repeat it
        return RunCheck(run.run_id, run.status, reasons, None)
    replayed = await replay_run(run, wf, models=models)
    for a in replayed.attempts:
        if a.verdict == "different":
            reasons.append(f"step {a.recorded.label} attempt {a.recorded.attempt} gives another output or error")
        elif a.verdict == "new failure":
            error = a.error or {}
            reasons.append(
                f"step {a.recorded.label} attempt {a.recorded.attempt} now fails: {error.get('type')}: "
                f"{str(error.get('message'))[:200]}"
            )
    return RunCheck(run.run_id, run.status, reasons, replayed)
