"""Steps declared ``local=True``: run inside the orchestrator that owns the run, with no Kafka round trip.

Like Temporal's local activities: for short steps. The result is journaled
like any other and made durable by the orchestrator's checkpoint; a crash
before the checkpoint runs the step again (at least once, same idempotency key).

Its result carries no MAC (:mod:`streams.authentication`), and needs none: it
never crosses Kafka as a result record, it goes from this process's step
straight into its own transition. Only results read from the results topic
are verified, and a record there answering a local step is held to that too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from processors.engine.execute import run_step
from processors.engine.workflow import Workflow
from processors.models import ModelClient
from schemas.models import StepCommand, StepResult


class LocalSteps:
    """Runs local steps' commands to their results, on an event loop of its own."""

    def __init__(self, workflows: Mapping[str, Workflow], worker_name: str, models: ModelClient) -> None:
        self._workflows = workflows
        self._worker_name = worker_name
        self._models = models
        self._loop = asyncio.new_event_loop()

    def is_local(self, wf: Workflow, command: StepCommand) -> bool:
        return wf.has_step(command.step) and wf.step(command.step).local

    def run(self, command: StepCommand) -> StepResult:
        """Execute one attempt now; step errors come back as the result's error, never raised."""
        return self._loop.run_until_complete(run_step(self._workflows, command, self._worker_name, models=self._models))

    def close(self) -> None:
        self._loop.close()
