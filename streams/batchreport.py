"""What a committed orchestrator batch tells telemetry: local step spans, retries, dead letters, run spans.

Collected while the batch is applied, sent only once its checkpoint is committed, so a batch that is rolled back
(a crash, a fenced write) reports nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from processors.engine.status import AT_REST
from processors.engine.workflow import Workflow
from schemas.models import JournalEvent, JournalKind, RunState, StepResult
from streams.telemetry import Telemetry, parent_of_run


@dataclass
class BatchReport:
    """Local step attempts (result, run generation, workflow), journal events and record dead letters of a batch."""

    local_results: list[tuple[StepResult, int, Workflow]] = field(default_factory=list)
    journal: list[JournalEvent] = field(default_factory=list)
    record_letters: int = 0

    def send(self, t: Telemetry, states: Mapping[tuple[int, str], RunState]) -> None:
        """Spans and metrics: local step attempts, retries, dead letters, runs that ended or paused (``states``: the
        batch's run states by partition and run id)."""
        for result, generation, wf in self.local_results:
            spec = wf.step(result.step)
            output = json.loads(result.output_json) if result.output_json else None
            evaluation = spec.evaluation(output) if spec.evaluation is not None and output is not None else None
            t.step_span(result, spec.span_name, parent_of_run(result.run_id, generation), evaluation)
        if self.record_letters:
            t.dead_letters.add(self.record_letters, {"kind": "record"})
        ended = {run_id: state for (_, run_id), state in states.items()}
        for event in self.journal:
            kind = event.kind
            if kind in (JournalKind.STEP_RETRY_WAITING, JournalKind.COMPENSATION_RETRY_WAITING):
                t.retries.add(1, {"workflow": event.workflow, "step": event.step or ""})
            elif kind in (JournalKind.STEP_DEAD_LETTERED, JournalKind.COMPENSATION_DEAD_LETTERED):
                t.dead_letters.add(1, {"kind": "step", "workflow": event.workflow, "step": event.step or ""})
            elif kind in AT_REST:  # a pause closes its generation's span too (a redrive starts the next)
                state = ended.get(event.run_id)
                if state is not None:
                    t.run_span(
                        event.run_id,
                        event.workflow,
                        state.generation,
                        AT_REST[kind].value,
                        state.started_at_ms,
                        event.at_ms,
                        received_at_ms=state.received_at_ms,
                    )
