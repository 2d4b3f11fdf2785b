"""Personal data in, none out: reports full of it go through `durable produce`, the gateway and a real worker.

Every kind the edge redacts is put in every free-text field and the
structured fields of accepted reports, and in reports the intake rejects,
both through `durable produce` and `POST /api/v1/agent/run`; one accepted
claim is then sent again with other words straight to the input topic, so
the worker dead-letters it. Afterwards every topic of the namespace is read
raw (keys, values, headers: inputs, journal, spans, decisions, dead letters),
and the worker's log, the CLI's output, the gateway's answers and this
process's log records are searched: no raw value may be anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from connectors.gateway.keys import Role
from processors.engine.inputs import Accepted, parse_lines
from processors.fnol import FNOL
from streams.config import Settings
from streams.kafka import admin, read_to_end, reader
from streams.topics import Topics
from tests.conftest import ROOT, WorkerProcesses, wait_for
from tests.gateway_helpers import LiveGateway
from tests.helpers import decisions, produce
from tests.unit.test_redaction import CORPUS

NAMES = ["Priya Raman-Okafor", "Tomasz Wiśniewski", "Oluwaseun Adeyemi"]
EMAILS = ["priya.r@example.co.uk", "tomasz.w@example.com", "seun.a@example.org"]
PHONES = ["+44 (0)20 7946 0958", "07700-900123", "+44 7700 900456"]
PLATES = ["EF79 EFK", "AB12 CDE", "KX18 ZTP"]
FREE_TEXT = "; ".join(v for values in CORPUS.values() for v in values if len(v) >= 8)


def _report(i: int, **changes: object) -> dict[str, object]:
    name = NAMES[i % len(NAMES)]
    report: dict[str, object] = {
        "claim_id": f"RED-{i:03d}",
        "tenant_id": "acme",
        "policy_number": "POL-348759",
        "reported_at": "2026-11-03T09:01:00Z",
        "loss_date": "2026-11-02",
        "loss_type": "auto_collision",
        "description": f"I am {name}. {FREE_TEXT}. Write to {EMAILS[i % 3]}, ring {PHONES[i % 3]}; {name.split()[0]} here.",
        "location": {"postcode": "EH1 1YZ", "country": "GB"},
        "claimant": {"name": name, "email": EMAILS[i % 3], "phone": PHONES[i % 3]},
        "vehicle": {"plate": PLATES[i % 3], "make": f"Ford {name}", "model": f"Focus {EMAILS[i % 3]}", "year": 2019},
        "photos": [{"uri": "https://img.example.com/a.jpg", "labels": ["front_damage"]}],
        "estimated_amount": 2400.0 + i,
        "currency": "GBP",
    }
    report.update(changes)
    return report


def _raw_values() -> list[str]:
    values = [*NAMES, *EMAILS, *PHONES, *PLATES, *(v for values in CORPUS.values() for v in values)]
    values += [n.split()[-1] for n in NAMES]
    # A postcode alone is location data and stays in location.postcode on purpose; as free text it is redacted.
    return [v for v in values if v != "EH1 1YZ"]


def _rejected_lines() -> list[str]:
    return [
        json.dumps(_report(10, loss_date="2027-01-01")),  # loss after the report, PII everywhere
        json.dumps(_report(11, claim_id="CLM-4111111111111111")),
        json.dumps(_report(12, policy_number="AB123456C")),
        json.dumps(_report(13, location={"postcode": "SW1A 2AA", "country": EMAILS[0]})),
        json.dumps(_report(14, photos=[{"uri": f"https://img.example.com/{EMAILS[1]}.jpg", "labels": []}])),
        json.dumps(_report(15, estimated_amount="lots")),
        f'{{"claim_id": "RED-016", "description": "{NAMES[0]} {EMAILS[0]}"',  # not JSON
    ]


def _everything_on_topics(settings: Settings) -> bytes:
    """Keys, values and header values of every record of every topic of the namespace, as raw bytes."""
    names = sorted(t for t in admin(settings).list_topics(timeout=10).topics if t.startswith(f"{settings.namespace}."))
    assert any(n.endswith(".dlq") or "dead" in n for n in names), names
    c = reader(settings)
    chunks: list[bytes] = []
    try:
        for name in names:
            meta = c.list_topics(name, timeout=10).topics[name]
            for msg in read_to_end(c, [TopicPartition(name, p, 0) for p in sorted(meta.partitions)]):
                chunks += [msg.key() or b"", msg.value() or b""]
                chunks += [v or b"" for _, v in msg.headers() or []]
    finally:
        c.close()
    return b"\n".join(chunks)


def _absent(haystack: str, where: str) -> None:
    lowered = haystack.lower()
    for value in _raw_values():
        assert value.lower() not in lowered, f"{value!r} found in {where}"


def test_no_raw_personal_data_reaches_topics_logs_spans_or_dead_letters(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    accepted = [_report(i) for i in range(3)]
    batch = tmp_path / "reports.jsonl"
    batch.write_text("\n".join([*map(json.dumps, accepted), *_rejected_lines()]) + "\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    workers.start("w1", "--workflow", "processors.fnol:FNOL")
    produced = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", "fnol", str(batch)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 1 and "produced 3 input(s)" in produced.stderr, produced.stderr
    assert produced.stderr.count(": ") >= len(_rejected_lines()), produced.stderr  # each rejected line said why
    answers: list[str] = []
    with LiveGateway(settings) as gw, gw.client(gw.key("acme", Role.SUBMITTER)) as http:
        for i in (20, 21):
            taken = http.post("/api/v1/agent/run", json=_report(i))
            assert taken.status_code == 202, taken.text
            answers.append(taken.text)
        for line in _rejected_lines():
            refused = http.post("/api/v1/agent/run", content=line, headers={"Content-Type": "application/json"})
            assert refused.status_code in (400, 422), refused.text
            answers.append(refused.text)
    run_ids = {f"fnol:acme:RED-{i:03d}" for i in (0, 1, 2, 20, 21)}
    wait_for(lambda: {d["run_id"] for d in decisions(settings)} >= run_ids, 90, "the five claims decided")

    # The first claim again with other words, straight to the topic: journaled as a conflict and dead-lettered.
    other = next(iter(parse_lines(FNOL, [json.dumps(_report(0, description=f"Also {NAMES[0]} on {PHONES[1]}"))])))
    assert isinstance(other, Accepted)
    produce(settings, [other])
    dlq = Topics(settings.namespace).dead_letters
    wait_for(lambda: dlq in _topics_with_records(settings), 60, "the conflicting claim dead-lettered")

    on_topics = _everything_on_topics(settings).decode("utf-8", errors="replace")
    assert "pii_" in on_topics and "[email" in on_topics  # tokens and redaction marks are there instead
    _absent(on_topics, "a topic")
    _absent(workers.log("w1"), "the worker's log")
    _absent(produced.stdout + produced.stderr, "durable produce's output")
    _absent("\n".join(answers), "the gateway's answers")
    _absent(caplog.text, "this process's log (the gateway's included)")


def _topics_with_records(settings: Settings) -> set[str]:
    c = reader(settings)
    try:
        found = set()
        md = c.list_topics(timeout=10).topics
        for name, meta in md.items():
            if not name.startswith(f"{settings.namespace}."):
                continue
            for p in meta.partitions:
                low, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > low:
                    found.add(name)
        return found
    finally:
        c.close()
