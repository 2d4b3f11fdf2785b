"""The gateway verifies every decision it serves, as the sinks do, before a client sees it.

A run's output (what the run detail, the run list, the trace and a decided
submission answer with) is served only when the run passes the check
``durable audit verify`` makes (:func:`streams.audit.verify_run`): its journal's
hash chain is unbroken, and every output record of the run on the workflow's
output topic is signed by a key of the gateway's keyring and names an ending
event of that chain. The answer carries a ``signature`` object:

- ``verified``: the check passed; ``key_id`` names the key that signed the latest decision;
- ``invalid``: it failed; the output is withheld (``output`` and ``summary`` are null) and ``reason``
  says what and where. The record named is written once as a dead letter (kind ``record``, id
  ``topic:partition:offset``, the id a sink gives the same record, so one bad record is one letter
  whoever finds it), logged (the reason only: key ids, seqs and places, never the record) and counted
  (``durable.gateway.decisions.invalid``);
- ``unverified``: the journal says the run ended with an output but no output record of it can be
  read yet (they are written in one batch, not atomically); withheld, nothing written;
- ``unsigned``: the gateway runs with ``DURABLE_SIGNING=off`` and checks nothing.

The answer stays 200: the client's request was good, the record was not.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import TopicPartition
from fastapi.concurrency import run_in_threadpool

from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.models import Signature
from processors.engine.workflow import Workflow
from schemas import DecodeError, from_bytes, to_bytes
from schemas.models import DeadLetter
from streams import audit, deadletters, signing
from streams.config import Settings
from streams.kafka import partition_for, read_to_end, reader
from streams.reading import read_all
from streams.signing import Keyring
from streams.topics import Topics, ensure_topics
from streams.writer import Writer

log = logging.getLogger(__name__)

Status = Literal["verified", "invalid", "unverified", "unsigned"]
# How long a decided run's output record may trail its journal ending (one batch, two topics) before it is missed.
OUTPUT_GRACE_S = 5.0


@dataclass(frozen=True)
class Verdict:
    """What checking a run's decision found."""

    status: Status
    key_id: str | None = None
    reason: str | None = None

    @property
    def servable(self) -> bool:
        return self.status in ("verified", "unsigned")

    def shown(self) -> Signature:
        """As the API's ``signature`` object."""
        return Signature(status=self.status, key_id=self.key_id, reason=self.reason)


UNSIGNED = Verdict("unsigned", reason=f"the gateway checks no signatures ({signing.SIGNING_ENV}=off)")


def gateway_keyring() -> Keyring | None:
    """The public keys the gateway verifies with, None with ``DURABLE_SIGNING=off``.

    :class:`streams.signing.SigningKeyError` when signing is on and there is no key: the gateway refuses to
    start rather than serve decisions it cannot check (as a sink does).
    """
    return signing.verifying_keyring(" to serve decisions unchecked")


class DecisionCheck:
    """Verifies runs' decisions with a keyring; dead-letters each bad record once."""

    def __init__(self, settings: Settings, wf: Workflow, metrics: GatewayMetrics, keyring: Keyring | None) -> None:
        self.settings = settings
        self.keyring = keyring
        self.output_topic = Topics(settings.namespace).name(wf.output_topic)
        self.workflow = wf.name
        self._metrics = metrics
        self._lock = threading.Lock()
        self._reported: set[str] = set()

    def verdicts(self, run_ids: set[str]) -> dict[str, Verdict]:
        """Each run's verdict (blocking: reads the runs' journal and output partitions)."""
        if self.keyring is None or not run_ids:
            return dict.fromkeys(run_ids, UNSIGNED)
        evidence = self._read(run_ids)
        return {run_id: self._judge(run_id, evidence) for run_id in run_ids}

    def _read(self, run_ids: set[str]) -> audit.Evidence:
        """The runs' journal and output records, as :func:`streams.audit.read` gives them, in one pass of one reader.

        (Half the time of reading the two topics one after the other, which a ``Prefer: wait`` answer waits for.)
        """
        journal_topic = Topics(self.settings.namespace).journal
        partitions = sorted({partition_for(r, self.settings.partitions) for r in run_ids})
        c = reader(self.settings)
        try:
            present = c.list_topics(timeout=10).topics  # naming a missing topic would create it
            starts = [TopicPartition(t, p, 0) for t in (journal_topic, self.output_topic) if t in present for p in partitions]
            records = [audit.Written.of(m) for m in read_to_end(c, starts) if m.value() is not None]
        finally:
            c.close()
        journal: dict[str, list[audit.Written]] = {}
        outputs: dict[str, list[audit.Written]] = {}
        for rec in records:
            if rec.key in run_ids:
                (journal if rec.topic == journal_topic else outputs).setdefault(rec.key, []).append(rec)
        return audit.Evidence(journal, outputs)

    def verdict(self, run_id: str) -> Verdict:
        """One decided run's verdict, waiting up to :data:`OUTPUT_GRACE_S` for an output record still in flight."""
        deadline = time.monotonic() + OUTPUT_GRACE_S
        while True:
            found = self.verdicts({run_id})[run_id]
            if found.status != "unverified" or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    async def guard(self, run_id: str, output: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Verdict | None]:
        """The output to serve (None unless it verified, or signing is off) and its verdict (None: no output)."""
        if output is None:
            return None, None
        found = UNSIGNED if self.keyring is None else await run_in_threadpool(self.verdict, run_id)
        return (output if found.servable else None), found

    def _judge(self, run_id: str, evidence: audit.Evidence) -> Verdict:
        assert self.keyring is not None
        outputs = evidence.outputs.get(run_id, [])
        result = audit.verify_run(run_id, evidence.journal.get(run_id, []), outputs, self.keyring)
        if result.problem is not None:
            reason = f"{result.problem} ({result.where})" if result.where else result.problem
            if result.record is not None:
                self._report(run_id, result.record, result.problem)
            return Verdict("invalid", reason=reason)
        if not outputs:
            return Verdict("unverified", reason=f"no decision of this run on {self.output_topic} to verify yet")
        latest = max(outputs, key=lambda r: (r.partition, r.offset))
        return Verdict("verified", key_id=self._key_id(latest))

    @staticmethod
    def _key_id(rec: audit.Written) -> str | None:
        from schemas.codec import decode

        try:
            _, record = decode(rec.value)
        except DecodeError:
            return None
        kid = record.get("signing_key_id")
        return kid if isinstance(kid, str) else None

    def _report(self, run_id: str, rec: audit.Written, problem: str) -> None:
        """Log, count and dead-letter a bad record, once per record (also across restarts: the topic is asked)."""
        letter_id = deadletters.dead_letter_id(rec.topic, rec.partition, rec.offset)
        with self._lock:
            if letter_id in self._reported:
                return
            self._reported.add(letter_id)
            log.warning("run %s: not served, its record %s does not verify: %s", run_id, rec.where, problem)
            self._metrics.invalid_decisions.add(1, {"workflow": self.workflow})
            try:
                if not self._lettered(letter_id):
                    self._write(self._letter(run_id, rec, problem, letter_id))
            except Exception:
                self._reported.discard(letter_id)  # the next read tries again
                log.exception("dead letter %s for run %s could not be written", letter_id, run_id)

    def _lettered(self, letter_id: str) -> bool:
        for msg in read_all(self.settings, Topics(self.settings.namespace).dead_letters):
            try:
                if from_bytes(msg.value() or b"", DeadLetter).dead_letter_id == letter_id:
                    return True
            except DecodeError:
                continue
        return False

    def _letter(self, run_id: str, rec: audit.Written, problem: str, letter_id: str) -> DeadLetter:
        journal = rec.topic == Topics(self.settings.namespace).journal
        return DeadLetter(
            dead_letter_id=letter_id,
            reason=f"gateway: {problem}"[:2000],
            error_type="BrokenChain" if journal else "InvalidSignature",
            source_topic=rec.topic,
            source_partition=rec.partition,
            source_offset=rec.offset,
            run_id=run_id,
            payload=rec.value[: deadletters.MAX_PAYLOAD],
            payload_truncated=len(rec.value) > deadletters.MAX_PAYLOAD,
            at_ms=int(time.time() * 1000),
            workflow=self.workflow,
            kind="record",
        )

    def _write(self, letter: DeadLetter) -> None:
        topic = Topics(self.settings.namespace).dead_letters
        ensure_topics(self.settings, [topic])
        writer = Writer(self.settings)
        try:
            run_id = letter.run_id or ""
            writer.send(topic, to_bytes(letter), key=run_id, partition=partition_for(run_id, self.settings.partitions))
            writer.flush(30)
        finally:
            writer.close()
