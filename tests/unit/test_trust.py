"""Trust, without Kafka: keys, signed outputs, the journal's hash chain, and the audit of a run's records."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

import schemas.fnol  # noqa: F401 - FNOL's records, known to the codec
from processors.engine import chain
from processors.engine.status import ENDINGS
from processors.engine.transition import Transition, transition
from schemas import from_bytes, registry, to_bytes
from schemas.fnol.models import RoutedDecision
from schemas.models import JournalEvent
from streams import audit, signed_outputs, signing
from streams.audit import Written
from streams.signing import Keyring, Signer
from tests.unit.test_transition import RUN, WF, ok, started

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "durable.fnol.RoutedDecision"


def decision(**changes: Any) -> dict[str, Any]:
    base = RoutedDecision(
        decision_id="d-1",
        claim_id="C-1",
        tenant_id="acme",
        run_id=RUN,
        status="ROUTED",
        queue="fast-track",
        severity="low",
        reserve=5600.0,
        currency="GBP",
        decided_at_ms=1234,
    ).model_dump(mode="python")
    return {**base, **changes}


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return signing.generate(tmp_path / "signing.key")


# ---------------------------------------------------------------- keys


def test_a_generated_key_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k" / "signing.key"
    signer = signing.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.load(path).key_id == signer.key_id, "the key id is a fingerprint of the key, stable across loads"
    with pytest.raises(FileExistsError):
        signing.generate(path)


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    signing.generate(path)
    path.chmod(0o640)
    with pytest.raises(signing.SigningKeyError, match="readable by others"):
        signing.load(path)


def test_a_worker_without_a_key_refuses_unless_signing_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(signing.SigningKeyError, match="durable keys generate"):
        signing.signer_from_env()
    monkeypatch.setenv(signing.SIGNING_ENV, "off")
    assert signing.signer_from_env() is None


def test_the_keyring_holds_the_signing_key_and_the_rotated_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = signing.generate(tmp_path / "old.key")
    (tmp_path / "old.pem").write_text(signing.public_pem(old.public))
    new = signing.generate(tmp_path / "new.key")
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "new.key"))
    monkeypatch.setenv(signing.VERIFY_ENV, str(tmp_path / "old.pem"))
    ring = signing.keyring_from_env()
    assert set(ring.keys) == {old.key_id, new.key_id}
    again = Keyring.from_json(json.loads(json.dumps(ring.to_json())))
    assert set(again.keys) == set(ring.keys), "the JSON keyring reads back to the same keys"


# ---------------------------------------------------------------- signed outputs


def test_a_signed_decision_verifies_and_carries_its_key_and_head(signer: Signer) -> None:
    value = signed_outputs.sign(SCHEMA, decision(), "ab" * 32, signer)
    problem, record = signed_outputs.verify(value, Keyring.of([signer.public]))
    assert problem is None
    assert record["signing_key_id"] == signer.key_id and record["journal_head"] == "ab" * 32


def test_signing_is_deterministic_so_a_rewrite_after_a_crash_is_the_same_record(signer: Signer) -> None:
    assert signed_outputs.sign(SCHEMA, decision(), None, signer) == signed_outputs.sign(
        SCHEMA, decision(), None, signer
    )


@pytest.mark.parametrize("field,value", [("reserve", 1.0), ("queue", "fraud"), ("journal_head", "00" * 32)])
def test_an_edited_field_breaks_the_signature(signer: Signer, field: str, value: Any) -> None:
    signed = signed_outputs.verify(
        signed_outputs.sign(SCHEMA, decision(), "ab" * 32, signer), Keyring.of([signer.public])
    )[1]
    # Re-encode the edited record keeping the original signature: what an editor without the key can do.
    forged = signed_outputs.sign(
        SCHEMA, {**signed, field: value}, signed["journal_head"] if field != "journal_head" else value, signer
    )
    forged = forged[: -signed_outputs.SIGNATURE_HEX] + str(signed["signature"]).encode()
    problem, _ = signed_outputs.verify(forged, Keyring.of([signer.public]))
    assert problem is not None and "bad signature" in problem


def test_a_decision_signed_by_an_unknown_key_is_refused(signer: Signer, tmp_path: Path) -> None:
    stranger = signing.generate(tmp_path / "stranger.key")
    problem, _ = signed_outputs.verify(
        signed_outputs.sign(SCHEMA, decision(), None, stranger), Keyring.of([signer.public])
    )
    assert problem is not None and "unknown key id" in problem


def test_old_decisions_still_verify_after_a_rotation(signer: Signer, tmp_path: Path) -> None:
    old_value = signed_outputs.sign(SCHEMA, decision(), None, signer)
    new = signing.generate(tmp_path / "new.key")
    ring = Keyring.of([new.public, signer.public])
    assert signed_outputs.verify(old_value, ring)[0] is None
    assert signed_outputs.verify(signed_outputs.sign(SCHEMA, decision(), None, new), ring)[0] is None


def test_an_unsigned_decision_does_not_verify(signer: Signer) -> None:
    from schemas import encode

    problem, _ = signed_outputs.verify(encode(SCHEMA, decision()), Keyring.of([signer.public]))
    assert problem is not None and problem.startswith("unsigned")


def test_every_schema_with_a_signature_ends_with_the_trust_fields() -> None:
    """The signed bytes are the record up to its last field: a schema version that moved them would break verifiers."""
    for schema_dir, versions_dir in registry.schema_sets():
        for version in [*registry.current(schema_dir).values(), *registry.frozen(versions_dir)]:
            names = [f["name"] for f in version.parsed["fields"]]
            if "signature" in names:
                assert tuple(names[-3:]) == signed_outputs.TRUST_FIELDS, version.path


def test_the_readme_snippet_verifies_with_cryptography_alone(signer: Signer) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(# verify_decision: .*?)```", readme, re.S)
    assert match, "the README's Trust section has the standalone verification snippet"
    scope: dict[str, Any] = {}
    exec(match.group(1), scope)
    value = signed_outputs.sign(SCHEMA, decision(), "ab" * 32, signer)
    pem = signing.public_pem(signer.public).encode()
    assert scope["verify_decision"](value, pem) is True
    tampered = value.replace(b"fast-track", b"fast-trick")
    assert scope["verify_decision"](tampered, pem) is False


# ---------------------------------------------------------------- the hash chain, in the pure transition


def _completed() -> list[Transition]:
    state = None
    steps = []
    for event in [None, ok("a"), ok("b"), ok("c"), ok("d")]:
        t = started() if event is None else transition(WF, state, event)
        steps.append(t)
        state = t.state
    return steps


def test_each_journal_event_names_the_hash_of_the_one_before() -> None:
    steps = _completed()
    events = [o.record for t in steps for o in t.outgoing if o.kind == "journal"]
    assert isinstance(events[0], JournalEvent) and events[0].prev_hash is None
    for before, after in itertools.pairwise(events):
        assert isinstance(before, JournalEvent) and isinstance(after, JournalEvent)
        assert after.prev_hash == chain.hash_value(to_bytes(before))
    final = steps[-1].state
    assert final is not None and final.chain_head == chain.hash_event(events[-1])  # type: ignore[arg-type]
    [output] = [o for o in steps[-1].outgoing if o.kind == "output"]
    assert events[-1].kind in ENDINGS  # type: ignore[union-attr]
    assert output.chain_head == final.chain_head, "the output carries the head: the run's whole history"


def test_applying_the_same_events_again_writes_identical_links() -> None:
    first = [o.record for t in _completed() for o in t.outgoing]
    second = [o.record for t in _completed() for o in t.outgoing]
    assert first == second


# ---------------------------------------------------------------- audit of a run's records


def _records(signer: Signer) -> tuple[list[Written], list[Written]]:
    steps = _completed()
    journal = [
        Written("ns.journal", 0, i, RUN, to_bytes(o.record))  # type: ignore[arg-type]
        for i, o in enumerate(o for t in steps for o in t.outgoing if o.kind == "journal")
    ]
    head = steps[-1].state.chain_head  # type: ignore[union-attr]
    value = signed_outputs.sign(SCHEMA, decision(), head, signer)
    return journal, [Written("ns.decisions", 0, 0, RUN, value)]


def test_an_untouched_run_verifies_and_a_rewritten_event_counts_once(signer: Signer) -> None:
    journal, outputs = _records(signer)
    again = [*journal, Written("ns.journal", 0, 99, RUN, journal[2].value)]
    result = audit.verify_run(RUN, again, outputs, Keyring.of([signer.public]))
    assert result.ok, result.problem
    assert result.events == len(journal) and result.outputs == 1


def test_tampering_is_found_and_named(signer: Signer) -> None:
    journal, outputs = _records(signer)
    ring = Keyring.of([signer.public])
    event = from_bytes(journal[3].value, JournalEvent)
    altered = to_bytes(event.model_copy(update={"detail_json": '{"reserve":1}'}))
    cases = {
        "altered": [*journal[:3], Written("ns.journal", 0, 3, RUN, altered), *journal[4:]],
        "deleted": [*journal[:3], *journal[4:]],
        "reordered": [*journal[:3], journal[4], journal[3], *journal[5:]],
    }
    renumber = {what: [dataclasses.replace(r, offset=i) for i, r in enumerate(rs)] for what, rs in cases.items()}
    for what, records in renumber.items():
        result = audit.verify_run(RUN, records, outputs, ring)
        assert not result.ok, what
        assert result.where.startswith("ns.journal[0]@"), (what, result.where)
    # An altered event is caught at the next link; an altered last event, at the output's head.
    last = from_bytes(journal[-1].value, JournalEvent)
    tail = [
        *journal[:-1],
        Written("ns.journal", 0, len(journal) - 1, RUN, to_bytes(last.model_copy(update={"at_ms": 1}))),
    ]
    result = audit.verify_run(RUN, tail, outputs, ring)
    assert not result.ok and result.where == "ns.decisions[0]@0" and "journal_head" in (result.problem or "")


def test_a_bundle_verifies_offline(signer: Signer, tmp_path: Path) -> None:
    journal, outputs = _records(signer)
    ring = Keyring.of([signer.public])
    data = audit.bundle(RUN, audit.Evidence({RUN: journal}, {RUN: outputs}), ring)
    assert audit.verify_bundle(json.loads(json.dumps(data))).ok
    data["journal"].pop(2)
    assert not audit.verify_bundle(data).ok


def test_the_test_key_is_the_one_workers_use() -> None:
    assert os.environ.get(signing.KEY_ENV), "tests/conftest.py gives every worker a signing key"


# ---------------------------------------------------------------- sinks verify before they store or deliver


def test_a_sink_turns_an_unsigned_or_edited_decision_into_a_bad_record(signer: Signer) -> None:
    from connectors.sinks.decisions import BadRecord, Decision, Source, read
    from schemas import encode

    ring, where = Keyring.of([signer.public]), Source("ns.decisions", 0, 7)
    good = signed_outputs.sign(SCHEMA, decision(), "ab" * 32, signer)
    assert isinstance(read(good, where, ring), Decision)
    for bad in (encode(SCHEMA, decision()), good.replace(b"fast-track", b"fast-trick")):
        item = read(bad, where, ring)
        assert isinstance(item, BadRecord) and item.error_type == "InvalidSignature", item


def test_a_sink_without_keys_refuses_to_start_unless_signing_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.sinks.decisions import sink_keyring

    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "none.key"))
    monkeypatch.delenv(signing.VERIFY_ENV, raising=False)
    with pytest.raises(signing.SigningKeyError, match=signing.VERIFY_ENV):
        sink_keyring()
    monkeypatch.setenv(signing.SIGNING_ENV, "off")
    assert sink_keyring() is None


def test_keys_generate_then_public_prints_a_keyring_verifiers_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    key = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv(signing.KEY_ENV, str(key))
    monkeypatch.delenv(signing.VERIFY_ENV, raising=False)
    made = CliRunner().invoke(app, ["keys", "generate"])
    assert made.exit_code == 0, made.output
    kid = signing.load(key).key_id
    assert f"key id: {kid}" in made.output and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert CliRunner().invoke(app, ["keys", "generate"]).exit_code == 1, "an existing key is never overwritten"
    pem = CliRunner().invoke(app, ["keys", "public"])
    assert pem.exit_code == 0 and kid in pem.output
    (tmp_path / "public.pem").write_text(pem.output)
    assert set(Keyring.of(signing.read_publics(tmp_path / "public.pem")).keys) == {kid}
    as_json = CliRunner().invoke(app, ["keys", "public", "--json"])
    (tmp_path / "ring.json").write_text(as_json.output)
    assert set(Keyring.of(signing.read_publics(tmp_path / "ring.json")).keys) == {kid}


def test_a_worker_without_a_signing_key_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "missing.key"))
    refused = CliRunner().invoke(app, ["worker", "--role", "orchestrator"])
    assert (
        refused.exit_code == 2 and "refusing to start" in refused.output and "durable keys generate" in refused.output
    )
