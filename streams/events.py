"""What the orchestrator reads: records of its input topics, decoded into the transition's events.

Three kinds of topic feed it, all keyed by run id: each workflow's input
topic (a run is requested), the step results topic (an attempt finished) and
the runs' control topic (an operator's redrive). A record that cannot be
turned into an event raises :class:`schemas.DecodeError` with the reason; the
orchestrator dead-letters it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from processors.engine.transition import Event, RedriveRequested, RunRequested, StepFinished
from processors.engine.workflow import Workflow
from schemas import DecodeError, decode, from_bytes
from schemas.models import RunControl, StepResult
from streams.topics import Topics


@dataclass(frozen=True)
class Inbound:
    """An input record as the transition sees it: the run's workflow, the run id, the event."""

    workflow: Workflow
    run_id: str
    event: Event


class Inputs:
    """The orchestrator's input topics in one namespace, and how each one's records become events."""

    def __init__(self, topics: Topics, workflows: dict[str, Workflow]) -> None:
        self.topics = topics
        self.workflows = workflows
        self.by_topic = {topics.name(wf.input_topic): wf for wf in workflows.values()}

    @property
    def names(self) -> list[str]:
        return [*self.by_topic, self.topics.results, self.topics.control]

    def decode(self, msg: Message) -> Inbound:
        topic = msg.topic() or ""
        value = msg.value()
        if value is None:
            raise DecodeError("empty record value")
        at_ms = msg.timestamp()[1]
        if topic == self.topics.results:
            result = from_bytes(value, StepResult)
            return Inbound(self._workflow(result.workflow, "result"), result.run_id, StepFinished(result, at_ms))
        if topic == self.topics.control:
            control = from_bytes(value, RunControl)
            return Inbound(self._workflow(control.workflow, "control"), control.run_id, RedriveRequested(control, at_ms))
        wf = self.by_topic[topic]
        _, record = decode(value, expect=wf.input_schema)
        try:
            run_id = wf.run_id_of(record)
        except Exception as exc:
            raise DecodeError(f"cannot derive run id: {exc}") from exc
        return Inbound(wf, run_id, RunRequested(run_id, record, at_ms))

    def _workflow(self, name: str, what: str) -> Workflow:
        wf = self.workflows.get(name)
        if wf is None:
            raise DecodeError(f"{what} for unknown workflow {name!r}")
        return wf
