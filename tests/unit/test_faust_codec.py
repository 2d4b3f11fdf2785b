"""The ``durable`` Faust codec and typed records read and write exactly the bytes the engine does."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.serializers.registry import Registry

from connectors.faust import CODEC_NAME, DeadLetter, FnolReported, Location, RoutedDecision
from schemas import encode, to_bytes
from schemas.fnol.models import RoutedDecision as EngineDecision
from schemas.models import DeadLetter as EngineDeadLetter
from streams import signed_outputs, signing
from streams.signing import Keyring
from tests.helpers import sample_claims

registry = Registry()


def test_a_decision_reads_as_a_typed_record_and_writes_back_the_same_bytes() -> None:
    engine = EngineDecision(
        decision_id="fnol:acme:C1/out/2",
        claim_id="C1",
        tenant_id="acme",
        run_id="fnol:acme:C1",
        status="REVIEW",
        queue="manual_handling",
        severity="HIGH",
        reserve=12300.0,
        currency="GBP",
        documents_requested=["police_report"],
        reasons=["fraud signal"],
        decided_at_ms=1_795_820_000_000,
    )
    data = to_bytes(engine)
    decision = registry.loads_value(RoutedDecision, data, serializer=CODEC_NAME)
    assert isinstance(decision, RoutedDecision)
    assert (decision.run_id, decision.status, decision.reserve, decision.reasons) == (
        "fnol:acme:C1",
        "REVIEW",
        12300.0,
        ["fraud signal"],
    )
    assert decision.dumps() == data, "re-encoded with the current schema, byte for byte"


def test_a_signed_decision_reads_and_writes_back_still_verifying(tmp_path: Path) -> None:
    signer = signing.generate(tmp_path / "signing.key")
    record = {
        **EngineDecision(
            decision_id="d",
            claim_id="C1",
            tenant_id="acme",
            run_id="fnol:acme:C1",
            status="ROUTED",
            queue="q",
            severity="LOW",
            reserve=1.0,
            currency="GBP",
            decided_at_ms=1,
        ).model_dump(mode="python")
    }
    data = signed_outputs.sign("durable.fnol.RoutedDecision", record, "ab" * 32, signer)
    decision = registry.loads_value(RoutedDecision, data, serializer=CODEC_NAME)
    assert decision.signing_key_id == signer.key_id and decision.journal_head == "ab" * 32
    assert signed_outputs.verify(decision.dumps(), Keyring.of([signer.public]))[0] is None


def test_a_reported_claim_reads_with_its_nested_records() -> None:
    record = sample_claims(1)[0].record
    data = encode("durable.fnol.FnolReported", record)
    claim = registry.loads_value(FnolReported, data, serializer=CODEC_NAME)
    assert isinstance(claim.location, Location) and claim.location.country == record["location"]["country"]
    assert claim.claimant.name_token.startswith("pii_"), "personal data arrives as tokens"
    assert claim.dumps() == data


def test_a_dead_letter_reads_with_its_payload_bytes() -> None:
    engine = EngineDeadLetter(
        dead_letter_id="main.decisions:0:7",
        reason="bad magic bytes",
        error_type="DecodeError",
        source_topic="main.decisions",
        source_partition=0,
        source_offset=7,
        payload=b"\x00junk",
        at_ms=1,
    )
    letter = registry.loads_value(DeadLetter, to_bytes(engine), serializer=CODEC_NAME)
    assert letter.payload == b"\x00junk" and letter.kind == "record"


def test_a_plain_dict_is_refused_because_it_names_no_schema() -> None:
    with pytest.raises(Exception, match="typed records"):
        registry.dumps_value(None, {"run_id": "x"}, serializer=CODEC_NAME)


def test_faust_apps_get_the_projects_kafka_security_settings() -> None:
    import faust

    from connectors.faust.settings import credentials
    from streams.kafka_config import KafkaConfigError

    assert credentials({}) is None
    scram = credentials(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "consumer",
            "sasl.password": "pw",
        }
    )
    assert isinstance(scram, faust.SASLCredentials) and scram.username == "consumer"
    with pytest.raises(KafkaConfigError, match="GSSAPI"):
        credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI"})
