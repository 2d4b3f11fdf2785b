"""Bad records on engine topics end as dead letters with a reason; the worker goes on."""

from __future__ import annotations

import os
import subprocess
import sys

from confluent_kafka import Producer

from schemas import to_bytes
from schemas.models import StepCommand
from streams import authentication
from streams.config import Settings
from streams.topics import Topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, read_topic, wait_for
from tests.helpers import decisions, produce, sample_claims


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_undecodable_and_unknown_records_are_dead_lettered(settings: Settings) -> None:
    topics = Topics(settings.namespace)
    worker = Worker(settings, load_workflows(["processors.fnol.workflow:FNOL"])).start()
    try:
        produce(settings, sample_claims(1))  # creates the topics and proves the worker is up
        wait_for(lambda: decisions(settings), 60, "a first decision")
        raw = Producer({"bootstrap.servers": settings.bootstrap_servers, "log_level": 3})
        unknown_schema = b"\xc3\x01" + b"\x01" * 8 + b"\x02x"
        command = StepCommand(
            command_id="r/s/1",
            run_id="r",
            workflow="fnol",
            step="no_such_step",
            attempt=1,
            input_json='{"input":{},"deps":{}}',
            scheduled_at_ms=0,
            timeout_ms=1000,
        )
        raw.produce(topics.name("fnol.reported"), key=b"k", value=b"not avro at all", partition=0)
        raw.produce(topics.name("fnol.reported"), key=b"k", value=unknown_schema, partition=1)
        raw.produce(topics.results, key=b"k", value=b"\xc3\x01garbage", partition=2)
        raw.produce(topics.commands, key=b"k", value=b"{json: no}", partition=3)
        raw.produce(topics.name("fnol.reported"), key=b"k", value=b"x" * 200_000, partition=0)
        signed = [authentication.header(topics.commands, command.command_id, to_bytes(command))]  # as a worker would
        raw.produce(topics.commands, key=b"r", value=to_bytes(command), partition=3, headers=signed)  # an error result
        raw.flush(10)
        later = sample_claims(5, prefix="AFTER-")
        produce(settings, later)
        wait_for(lambda: len(decisions(settings)) >= 6, 60, "decisions for claims sent after the bad records")

        def five_letters() -> list[dict[str, object]] | None:
            found = read_topic(settings, topics.dead_letters)
            return found if len(found) >= 5 else None

        letters = wait_for(five_letters, 30, "five dead letters")
        by_source = {(d["source_topic"], d["source_partition"]): d for d in letters}
        assert "bad magic" in by_source[(topics.name("fnol.reported"), 0)]["reason"]
        assert "unknown schema fingerprint" in by_source[(topics.name("fnol.reported"), 1)]["reason"]
        assert by_source[(topics.results, 2)]["error_type"] in ("DecodeError", "UnknownSchemaError")
        assert by_source[(topics.commands, 3)]["reason"]
        oversized = [d for d in letters if d["payload_truncated"]]
        assert oversized and len(oversized[0]["payload"]) == 64 * 1024
        assert worker.failed is None

        # The same letters, through the operator's tooling; they cannot be redriven, and it says why.
        listed = _cli(settings, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        garbage_id = next(d["dead_letter_id"] for d in letters if d["payload"] == b"not avro at all")
        assert garbage_id in listed.stdout and listed.stdout.count(" record ") >= 5
        shown = _cli(settings, "dlq", "show", str(garbage_id))
        assert shown.returncode == 0 and "not avro at all" in shown.stdout
        refused = _cli(settings, "dlq", "redrive", str(garbage_id))
        assert refused.returncode == 2 and "only step, compensation, delivery letters can be redriven" in refused.stderr
    finally:
        worker.stop()
        worker.join(20)
