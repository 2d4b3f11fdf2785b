"""The audit on a real broker: signed decisions verify, and tampering written straight to the topics is named."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from processors.engine import chain
from schemas import from_bytes, to_bytes
from schemas.codec import decode
from schemas.models import JournalEvent
from streams import audit, signed_outputs, signing
from streams.audit import Written
from streams.config import Settings
from streams.kafka import producer
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, TEST_SIGNER, wait_for
from tests.helpers import decisions, produce, sample_claims

FNOL = "processors.fnol.workflow:FNOL"


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _write(settings: Settings, topic: str, records: list[Written]) -> None:
    """Write records straight to a topic, each to the partition it names (what someone with write access can do)."""
    p = producer(settings)
    for r in records:
        p.produce(topic, r.value, r.key.encode(), partition=r.partition)
    assert p.flush(30) == 0


def _event(r: Written) -> JournalEvent:
    return from_bytes(r.value, JournalEvent)


def _rechain(records: list[Written]) -> list[Written]:
    """A forger's best effort: renumber seqs and recompute every link (the chain has no secret)."""
    out, head = [], None
    for seq, r in enumerate(records, start=1):
        event = _event(r).model_copy(update={"seq": seq, "event_id": f"{_event(r).run_id}/{seq}", "prev_hash": head})
        value = to_bytes(event)
        head = chain.hash_value(value)
        out.append(dataclasses.replace(r, value=value))
    return out


def test_decisions_verify_and_tampering_is_named(settings: Settings, tmp_path: Path) -> None:
    claims = sample_claims(6)
    worker = Worker(settings, load_workflows([FNOL])).start()
    try:
        produce(settings, claims)
        wait_for(lambda: len({d["run_id"] for d in decisions(settings)}) >= 6 or worker.failed, 90, "six decisions")
        assert worker.failed is None
    finally:
        worker.stop()
        worker.join(20)
    for d in decisions(settings):
        assert d["signing_key_id"] and d["journal_head"] and d["signature"], "every decision is signed"

    verified = _cli(settings, "audit", "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "6 of 6 runs verified, 0 broken" in verified.stdout

    # An evidence bundle verifies offline, and a bundle missing an event does not.
    run0 = claims[0].run_id
    bundle = tmp_path / "bundle.json"
    exported = _cli(settings, "audit", "export", run0, "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    offline = _cli(settings, "audit", "verify", "--file", str(bundle))
    assert offline.returncode == 0 and f"OK {run0}" in offline.stdout, offline.stdout + offline.stderr
    data = json.loads(bundle.read_text())
    data["journal"].pop(1)
    bundle.write_text(json.dumps(data))
    assert _cli(settings, "audit", "verify", "--file", str(bundle)).returncode == 1

    # A forged namespace: the same journal and decisions written straight to its topics, four runs tampered.
    source = Topics(settings.namespace)
    evidence = audit.read(settings, [source.name("decisions")])
    forged_settings = dataclasses.replace(settings, namespace=f"{settings.namespace}x")
    forged = Topics(forged_settings.namespace)
    ensure_topics(forged_settings, [forged.journal, forged.name("decisions")])
    runs = [c.run_id for c in claims]
    altered, deleted, reordered, inserted = runs[:4]
    journals: dict[str, list[Written]] = {}
    for run_id, records in evidence.journal.items():
        records = sorted(records, key=lambda r: r.offset)
        if run_id == altered:  # seq 3's input edited in place (a compacted or rewritten topic)
            event = _event(records[2])
            records[2] = dataclasses.replace(records[2], value=to_bytes(event.model_copy(update={"attempt": 7})))
        elif run_id == deleted:
            del records[3]
        elif run_id == reordered:
            records[3], records[4] = records[4], records[3]
        elif run_id == inserted:  # an extra step success, with every link after it recomputed
            records = _rechain([*records[:4], records[3], *records[4:]])
        journals[run_id] = records
    _write(forged_settings, forged.journal, [r for rs in journals.values() for r in rs])
    _write(forged_settings, forged.name("decisions"), [r for rs in evidence.outputs.values() for r in rs])

    # Two decisions written after the fact: one re-signed with an unknown key, one with an edited reserve.
    stranger = signing.generate(tmp_path / "stranger.key")
    resigned_run, edited_run = runs[4], runs[5]
    [resigned] = evidence.outputs[resigned_run][:1]
    record = _record(resigned.value)
    forged_value = signed_outputs.sign("durable.fnol.RoutedDecision", record, record["journal_head"], stranger)
    [edited] = evidence.outputs[edited_run][:1]
    record = _record(edited.value)
    record["reserve"] = record["reserve"] + 1000.0
    # The edited record's bytes with the original key id and signature (the editor has no key; the test signer
    # only lays the bytes out, and its signature is replaced).
    edited_value = signed_outputs.sign("durable.fnol.RoutedDecision", record, record["journal_head"], TEST_SIGNER)
    edited_value = edited_value[: -signed_outputs.SIGNATURE_HEX] + str(_record(edited.value)["signature"]).encode()
    _write(
        forged_settings,
        forged.name("decisions"),
        [dataclasses.replace(resigned, value=forged_value), dataclasses.replace(edited, value=edited_value)],
    )

    checked = _cli(forged_settings, "audit", "verify", "--all")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = {line.split()[1]: line for line in checked.stdout.splitlines() if line.startswith("BROKEN")}
    assert set(lines) == set(runs), checked.stdout
    journal_topic, decisions_topic = forged.journal, forged.name("decisions")
    assert f"at {journal_topic}[" in lines[altered] and "seq 4" in lines[altered], lines[altered]
    assert (
        f"at {journal_topic}[" in lines[deleted]
        and "expected seq 4, found seq 5" in lines[deleted]
        and "missing" in lines[deleted]
    )
    assert (
        f"at {journal_topic}[" in lines[reordered]
        and "found seq 5 (" in lines[reordered]
        and "out of order" in lines[reordered]
    )
    assert f"at {decisions_topic}[" in lines[inserted] and "journal_head" in lines[inserted], lines[inserted]
    assert f"at {decisions_topic}[" in lines[resigned_run] and "unknown key id" in lines[resigned_run]
    assert f"at {decisions_topic}[" in lines[edited_run] and "bad signature" in lines[edited_run]

    # Untouched runs still verify: the original namespace, and one run alone.
    again = _cli(settings, "audit", "verify", "--all")
    assert again.returncode == 0 and "6 of 6 runs verified" in again.stdout
    one = _cli(settings, "audit", "verify", runs[4])
    assert one.returncode == 0 and one.stdout.startswith(f"OK {runs[4]}"), one.stdout


def _record(value: bytes) -> dict[str, Any]:
    return decode(value)[1]
