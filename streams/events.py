"""What the orchestrator reads: records of its input topics, checked and decoded into the transition's events.

Three kinds of topic feed it, all keyed by run id: each workflow's input
topic (a run is requested), the step results topic (an attempt finished) and
the runs' control topic (an operator's redrive). Anyone who can write to them
may write anything, so every record is held to the contract before it
becomes an event:

- an input must decode as the workflow's input schema, be no larger than its
  intake allows and pass the intake's ``check`` (ids, token shapes, dates);
  one that arrived on another partition than its run's is *forwarded* there
  (whatever partitioner its producer used, a run has one owner);
- a result or a control record must carry a MAC under the worker secret
  (:mod:`streams.authentication`) over its value and its id (``command_id``,
  ``control_id``): only workers answer attempts, only holders of the secret
  redrive. One without a valid MAC changes nothing; its run goes on waiting
  for the real result;
- a result must name its attempt consistently (``command_id`` is
  ``run/step/attempt[/compensate]``) and carry a JSON object as output and a
  JSON list as recorded values; a result with a malformed output still
  reaches its run, as a failed, non-retryable attempt, and the record is
  dead-lettered.

A record that cannot be turned into an event raises :class:`schemas.DecodeError`
with the reason; the orchestrator dead-letters it and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from processors.engine.errors import InputRejected
from processors.engine.intake import MAX_INPUT_BYTES
from processors.engine.transition import Event, RedriveRequested, RunRequested, StepFinished
from processors.engine.workflow import Workflow
from schemas import DecodeError, decode, from_bytes
from schemas.models import RunControl, StepError, StepResult
from streams import authentication
from streams.kafka import partition_for
from streams.topics import Topics

MAX_ID_CHARS = 256


@dataclass(frozen=True)
class Inbound:
    """An input record as the transition sees it: the run's workflow, the run id, the event.

    ``rejected``: why the record itself is dead-lettered while its event still applies (a malformed
    result fails its attempt). ``forward_to``: the partition an input that arrived elsewhere belongs on.
    """

    workflow: Workflow
    run_id: str
    event: Event
    rejected: str | None = None
    forward_to: int | None = None


class Inputs:
    """The orchestrator's input topics in one namespace, and how each one's records become events."""

    def __init__(
        self,
        topics: Topics,
        workflows: Mapping[str, Workflow],
        partitions: int,
        secrets: Sequence[bytes] | None = None,
    ) -> None:
        self.topics = topics
        self.workflows = workflows
        self.partitions = partitions
        # Loaded once: an orchestrator with no worker secret (production, unset) does not start.
        self.secrets = list(secrets) if secrets is not None else authentication.verifying_secrets()
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
            self._authenticate(msg, result.command_id, value)
            return self._result(result, at_ms)
        if topic == self.topics.control:
            control = from_bytes(value, RunControl)
            self._authenticate(msg, control.control_id, value)
            _check_id("run_id", control.run_id)
            return Inbound(
                self._workflow(control.workflow, "control"), control.run_id, RedriveRequested(control, at_ms)
            )
        return self._input(self.by_topic[topic], value, msg.partition() or 0, at_ms)

    def _authenticate(self, msg: Message, record_id: str, value: bytes) -> None:
        try:
            authentication.verify(msg.topic() or "", record_id, value, msg.headers(), self.secrets)
        except authentication.Unauthenticated as exc:
            raise DecodeError(f"unauthenticated {record_id[:80]!r}: {exc}") from None

    def _input(self, wf: Workflow, value: bytes, partition: int, at_ms: int) -> Inbound:
        limit = wf.intake.max_bytes if wf.intake is not None else MAX_INPUT_BYTES
        if len(value) > limit:
            raise DecodeError(f"input of {len(value):,} bytes is over the workflow's limit of {limit:,}")
        _, record = decode(value, expect=wf.input_schema)
        if wf.intake is not None and wf.intake.check is not None:
            try:
                wf.intake.check(record)
            except InputRejected as exc:
                raise DecodeError(f"input breaks the {wf.name} contract: {exc}") from None
        try:
            run_id = wf.run_id_of(record)
        except Exception as exc:
            raise DecodeError(f"cannot derive run id: {exc}") from exc
        _check_id("run_id", run_id)
        home = partition_for(run_id, self.partitions)
        return Inbound(wf, run_id, RunRequested(run_id, record, at_ms), forward_to=home if home != partition else None)

    def _result(self, result: StepResult, at_ms: int) -> Inbound:
        wf = self._workflow(result.workflow, "result")
        _check_id("run_id", result.run_id)
        _check_id("step", result.step)
        if result.action not in ("run", "compensate") or result.attempt < 1:
            raise DecodeError(f"result with action {result.action!r} and attempt {result.attempt} names no attempt")
        expected = f"{result.run_id}/{result.step}/{result.attempt}" + (
            "/compensate" if result.action == "compensate" else ""
        )
        if result.command_id != expected:
            raise DecodeError(f"result's command_id {result.command_id!r} is not its attempt's ({expected!r})")
        problem = _malformed(result)
        if problem is None:
            return Inbound(wf, result.run_id, StepFinished(result, at_ms))
        # The attempt it answers failed: the run learns it (and stops, compensating), the record is dead-lettered.
        error = StepError(type="MalformedResult", message=problem, traceback="", retryable=False)
        failed = result.model_copy(
            update={"output_json": None, "recorded_json": None, "settings_json": None, "error": error}
        )
        return Inbound(wf, result.run_id, StepFinished(failed, at_ms), rejected=problem)

    def _workflow(self, name: str, what: str) -> Workflow:
        wf = self.workflows.get(name)
        if wf is None:
            raise DecodeError(f"{what} for unknown workflow {name!r}")
        return wf


def _check_id(name: str, value: str) -> None:
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable() or "/" in value:
        raise DecodeError(f"{name} {value[:80]!r} is not an id (printable, no '/', 1..{MAX_ID_CHARS} characters)")


def _malformed(result: StepResult) -> str | None:
    """Why a result's payload cannot be applied (None: it can)."""
    if result.output_json is not None and result.error is not None:
        return "result carries both an output and an error"
    if result.output_json is not None:
        try:
            output = json.loads(result.output_json)
        except (json.JSONDecodeError, RecursionError) as exc:
            return f"step output is not JSON: {exc}"[:500]
        if not isinstance(output, dict):
            return f"step output is a JSON {type(output).__name__}, not an object"
    if result.recorded_json is not None:
        try:
            recorded = json.loads(result.recorded_json)
        except (json.JSONDecodeError, RecursionError) as exc:
            return f"recorded values are not JSON: {exc}"[:500]
        if not isinstance(recorded, list):
            return "recorded values are not a JSON list"
    if result.settings_json is not None:
        try:
            settings = json.loads(result.settings_json)
        except (json.JSONDecodeError, RecursionError) as exc:
            return f"recorded settings are not JSON: {exc}"[:500]
        if not isinstance(settings, dict):
            return "recorded settings are not a JSON object"
    return None
