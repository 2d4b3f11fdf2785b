"""The pydantic models mirror the Avro schemas exactly, and every model survives Kafka's bytes."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from schemas import DecodeError, codec, encode, from_bytes, to_bytes
from schemas.fnol.models import FNOL_RECORDS, ClaimantTokens, FnolReported, Location, Photo, RoutedDecision, Vehicle
from schemas.models import (
    ENGINE_RECORDS,
    AttemptFailure,
    DeadLetter,
    ExpiredRun,
    JournalEvent,
    JournalKind,
    RunControl,
    RunState,
    RunStatus,
    StepCommand,
    StepError,
    StepResult,
    StepState,
    StepStatus,
    TraceSpan,
)

# Every record model this repository ships (the engine's and FNOL's), with its Avro name.
SCHEMA_OF: dict[type[BaseModel], str] = {m: m.avro_name for m in (*ENGINE_RECORDS, *FNOL_RECORDS)}

PRIMITIVES: dict[str, type] = {
    "string": str,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": bool,
    "bytes": bytes,
}


def _avro_kind(avro: Any) -> str:
    if isinstance(avro, list):
        return "union"
    if isinstance(avro, dict):
        return str(avro["type"])
    return str(avro)


def _non_null(annotation: Any) -> tuple[bool, Any]:
    """(is Optional, the annotation without None)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        assert len(rest) == 1, f"{annotation} unions more than one type with None"
        return True, rest[0]
    return False, annotation


def mismatches(annotation: Any, avro: Any, names: dict[str, Any], where: str) -> list[str]:
    """How a pydantic annotation differs from an Avro type (after fastavro parsing)."""
    if isinstance(avro, str) and avro in names:
        avro = names[avro]
    kind = _avro_kind(avro)
    optional, inner = _non_null(annotation)
    if kind == "union":
        branches = [b for b in avro if b != "null"]
        if "null" not in avro or len(branches) != 1:
            return [f"{where}: only [null, T] unions are mirrored, got {avro}"]
        if not optional:
            return [f"{where}: Avro is nullable but the model field is not Optional"]
        return mismatches(inner, branches[0], names, where)
    if optional:
        return [f"{where}: the model field is Optional but Avro type {kind} is not a union with null"]
    if kind in PRIMITIVES:
        return [] if inner is PRIMITIVES[kind] else [f"{where}: Avro {kind} mirrored as {inner}"]
    if kind == "enum":
        symbols = set(avro["symbols"])
        if typing.get_origin(inner) is typing.Literal:
            values = set(typing.get_args(inner))
        elif isinstance(inner, type) and issubclass(inner, enum.Enum):
            values = {m.value for m in inner}
        else:
            return [f"{where}: Avro enum mirrored as {inner}"]
        return [] if values == symbols else [f"{where}: enum symbols {sorted(symbols)} vs model {sorted(values)}"]
    if kind == "array":
        if typing.get_origin(inner) is not list:
            return [f"{where}: Avro array mirrored as {inner}"]
        return mismatches(typing.get_args(inner)[0], avro["items"], names, f"{where}[]")
    if kind == "record":
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return [f"{where}: Avro record mirrored as {inner}"]
        return record_mismatches(inner, avro, names, where)
    return [f"{where}: Avro type {kind} has no mirror rule"]


def record_mismatches(model: type[BaseModel], avro: dict[str, Any], names: dict[str, Any], where: str) -> list[str]:
    out: list[str] = []
    avro_fields = {f["name"]: f for f in avro["fields"]}
    model_fields = model.model_fields
    if list(avro_fields) != list(model_fields):
        out.append(f"{where}: Avro fields {list(avro_fields)} vs {model.__name__} fields {list(model_fields)}")
    for name in avro_fields.keys() & model_fields.keys():
        field, info = avro_fields[name], model_fields[name]
        out += mismatches(info.annotation, field["type"], names, f"{where}.{name}")
        # A field Avro can fill in (has a default) is one the model lets callers omit, with the same value.
        if ("default" in field) == info.is_required():
            out.append(
                f"{where}.{name}: Avro default present={'default' in field}, model required={info.is_required()}"
            )
        elif "default" in field:
            model_default = info.default_factory() if info.default is PydanticUndefined else info.default  # type: ignore[call-arg,misc]
            if model_default != field["default"]:
                out.append(f"{where}.{name}: Avro default {field['default']!r} vs model default {model_default!r}")
    return out


def _named(schema: Any, names: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, names)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            names[schema["name"]] = schema
        for f in schema.get("fields", []):
            _named(f["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _named(schema[key], names)
    return names


@pytest.mark.parametrize("model", list(SCHEMA_OF), ids=lambda m: m.__name__)
def test_model_mirrors_its_avro_record(model: type[BaseModel]) -> None:
    parsed = codec.schema(SCHEMA_OF[model]).parsed
    assert parsed["name"].endswith("." + model.__name__)
    assert record_mismatches(model, parsed, _named(parsed, {}), model.__name__) == []


def test_every_schema_has_a_model() -> None:
    current, _ = codec.catalogue()
    shipped = [name for name in current if name.startswith(("durable.engine.", "durable.fnol."))]
    assert sorted(SCHEMA_OF.values()) == sorted(shipped)


def test_the_mirror_check_notices_a_drift() -> None:
    """The comparison above is not vacuous: a nullable/required/type/name drift is reported."""
    parsed = codec.schema("durable.engine.StepCommand").parsed
    names = _named(parsed, {})
    drifted = dict(parsed, fields=[dict(f) for f in parsed["fields"]])
    drifted["fields"][0]["type"] = ["null", "string"]  # command_id nullable in Avro only
    drifted["fields"][4]["type"] = "string"  # attempt: int -> string
    drifted["fields"][5]["default"] = ""  # input_json gets an Avro default the model lacks
    drifted["fields"].append({"name": "extra", "type": "string"})
    problems = record_mismatches(StepCommand, drifted, names, "StepCommand")
    assert any("command_id" in p and "Optional" in p for p in problems)
    assert any("attempt" in p and "string" in p for p in problems)
    assert any("input_json" in p and "default" in p for p in problems)
    assert any("extra" in p for p in problems)


# ---------------------------------------------------------------- to_bytes / from_bytes

RUN = "fnol:acme:CLM-100001"

INSTANCES: list[BaseModel] = [
    FnolReported(
        claim_id="CLM-100001",
        tenant_id="acme",
        policy_number="POL-348759",
        reported_at="2026-11-03T09:01:00Z",
        loss_date="2026-11-02",
        loss_type="auto_collision",
        description="Another car hit mine near EH1 1YZ. Call [phone:pii_0123456789abcdef]. Ünïcödé ✓",
        location=Location(postcode="EH1 1YZ", country="GB"),
        claimant=ClaimantTokens(
            name_token="pii_aaaaaaaaaaaaaaaa", email_token=None, phone_token="pii_bbbbbbbbbbbbbbbb"
        ),
        vehicle=Vehicle(plate_token="pii_cccccccccccccccc", make="Ford", model="Focus", year=2013),
        photos=[
            Photo(uri="s3://claims-photos/100001/0.jpg", labels=["front_bumper_dent", "airbag_deployed"]),
            Photo(uri="s3://claims-photos/100001/1.jpg"),
        ],
        estimated_amount=6400.25,
        currency="GBP",
    ),
    FnolReported(
        claim_id="CLM-100003",
        tenant_id="globex",
        policy_number="POL-503431",
        reported_at="2026-11-05T11:03:00+00:00",
        loss_date="2026-11-04",
        loss_type="property_water",
        description="",
        location=Location(postcode="B33 8TH", country="GB"),
        claimant=ClaimantTokens(name_token="pii_dddddddddddddddd"),
        estimated_amount=0.0,
        currency="EUR",
    ),
    RoutedDecision(
        decision_id="5f0c3c84-4a7e-5b55-9d6b-7a3f5b1f3a10",
        claim_id="CLM-100001",
        tenant_id="acme",
        run_id=RUN,
        status="REVIEW",
        queue="motor_total_loss",
        severity="HIGH",
        reserve=12500.0,
        currency="GBP",
        documents_requested=["police_report", "repair_estimate"],
        reasons=["airbag deployed", "late report"],
        decided_at_ms=1_794_000_000_123,
    ),
    StepCommand(
        command_id=f"{RUN}/policy_check/2",
        run_id=RUN,
        workflow="fnol",
        step="policy_check",
        attempt=2,
        input_json='{"deps":{"plan":{"steps":["policy_check"]}},"input":{"claim_id":"CLM-100001"}}',
        scheduled_at_ms=1_794_000_000_000,
        timeout_ms=30_000,
    ),
    StepResult(
        command_id=f"{RUN}/policy_check/2",
        run_id=RUN,
        workflow="fnol",
        step="policy_check",
        attempt=2,
        error=StepError(type="TimeoutError", message="timed out", traceback="Traceback ...\n", retryable=False),
        started_at_ms=1_794_000_000_001,
        finished_at_ms=1_794_000_030_001,
        worker="executor-1",
    ),
    StepResult(
        command_id=f"{RUN}/plan/1",
        run_id=RUN,
        workflow="fnol",
        step="plan",
        attempt=1,
        output_json='{"steps":[]}',
        started_at_ms=1,
        finished_at_ms=2,
    ),
    JournalEvent(
        event_id=f"{RUN}/3",
        run_id=RUN,
        workflow="fnol",
        seq=3,
        kind=JournalKind.STEP_FAILED,
        at_ms=1_794_000_030_002,
        step="policy_check",
        attempt=2,
        detail_json='{"message":"timed out"}',
    ),
    JournalEvent(event_id=f"{RUN}/1", run_id=RUN, workflow="fnol", seq=1, kind=JournalKind.RUN_STARTED, at_ms=0),
    DeadLetter(
        dead_letter_id="commands/3/42",
        reason="not an Avro single-object record (bad magic bytes)",
        error_type="DecodeError",
        source_topic="prod.commands",
        source_partition=3,
        source_offset=2**40,
        run_id=RUN,
        step="route",
        payload=b"\xff\x00\xc3\x01not-utf8\xfe",
        payload_truncated=True,
        at_ms=1_794_000_000_000,
    ),
    RunState(
        run_id=RUN,
        workflow="fnol",
        status=RunStatus.RUNNING,
        input_json='{"claim_id":"CLM-100001"}',
        seq=4,
        started_at_ms=1_794_000_000_000,
        updated_at_ms=1_794_000_000_500,
        steps=[
            StepState(name="plan", status=StepStatus.SUCCEEDED, attempt=1, output_json='{"steps":[]}'),
            StepState(name="policy_check", status=StepStatus.SCHEDULED, attempt=2),
            StepState(name="route", status=StepStatus.PENDING),
            StepState(name="fraud_check", status=StepStatus.FAILED, attempt=3, error_json='{"type":"X"}'),
            StepState(
                name="severity_reserve",
                status=StepStatus.COMPENSATION_WAITING,
                attempt=1,
                output_json='{"reserve":4800.0}',
                due_at_ms=1_794_000_001_000,
                completed_seq=7,
                comp_attempt=2,
                failures=[
                    AttemptFailure(
                        action="compensate",
                        attempt=1,
                        type="ConnectionError",
                        message="ledger down",
                        traceback="Traceback ...\n",
                        retryable=True,
                        started_at_ms=1,
                        finished_at_ms=2,
                        worker="w1",
                    )
                ],
            ),
        ],
        generation=1,
        failure_json='{"step":"fraud_check"}',
    ),
    RunControl(
        control_id="redrive:fnol:acme:CLM-100001/fraud_check/run/3",
        run_id=RUN,
        workflow="fnol",
        action="redrive",
        step="fraud_check",
        dead_letter_id="fnol:acme:CLM-100001/fraud_check/run/3",
        requested_at_ms=1_794_000_000_000,
        requested_by="ops",
    ),
    TraceSpan(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        parent_span_id=None,
        name="orchestrator.run",
        run_id=RUN,
        start_unix_nano=1_794_000_000_000_000_000,
        end_unix_nano=1_794_000_002_910_000_000,
        status="OK",
        attributes_json='{"durable.run_id":"fnol:acme:CLM-100001"}',
    ),
    ExpiredRun(
        run_id=RUN,
        workflow="fnol",
        status="COMPLETED",
        input_digest="3f2a9c0d1e4b5a67",
        started_at_ms=1_794_000_000_000,
        ended_at_ms=1_794_000_002_910,
        expired_at_ms=1_794_604_802_910,
        generation=0,
    ),
]


def test_instances_cover_every_model() -> None:
    assert {type(i) for i in INSTANCES} == set(SCHEMA_OF)


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
def test_to_bytes_from_bytes_round_trip(instance: BaseModel) -> None:
    data = to_bytes(instance)
    assert data[:2] == codec.MAGIC
    assert codec.peek_schema(data).name == SCHEMA_OF[type(instance)]
    back = from_bytes(data, type(instance))
    assert type(back) is type(instance)
    assert back == instance
    assert to_bytes(back) == data  # re-encoding is byte-identical (dedupe by bytes is safe)


def test_from_bytes_of_another_models_record_is_a_decode_error() -> None:
    command = next(i for i in INSTANCES if isinstance(i, StepCommand))
    with pytest.raises(DecodeError):
        from_bytes(to_bytes(command), StepResult)


def test_to_bytes_refuses_a_model_without_a_schema() -> None:
    with pytest.raises(TypeError):
        to_bytes(Location(postcode="EH1 1YZ", country="GB"))


def test_encode_accepts_a_model_with_a_bytes_field() -> None:
    letter = next(i for i in INSTANCES if isinstance(i, DeadLetter))
    data = encode("durable.engine.DeadLetter", letter)
    assert from_bytes(data, DeadLetter) == letter


@pytest.mark.parametrize(
    "instance", [i for i in INSTANCES if not isinstance(i, DeadLetter)], ids=lambda i: type(i).__name__
)
def test_encode_of_a_model_equals_to_bytes(instance: BaseModel) -> None:
    assert encode(SCHEMA_OF[type(instance)], instance) == to_bytes(instance)
