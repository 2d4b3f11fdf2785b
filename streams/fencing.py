"""Fencing zombie orchestrators: a claim per partition, checked before every checkpoint's writes.

An orchestrator that stops answering for longer than its session (paused,
cut off from the broker, stuck) loses its partitions to another worker, which
re-processes the inputs it had not committed. When the first one wakes, it
may be in the middle of a batch, about to write what the new owner has
written already. Kafka's answer is a transactional producer fenced by epoch;
the embedded broker does not fence (notes/broker-facts.md), so we do it here:

- taking a partition over, an orchestrator appends a claim to partition ``p``
  of ``<ns>.orchestrator.owners`` and remembers the offset it got;
- before a checkpoint writes anything for ``p``, it asks the broker for that
  partition's latest offset (one ListOffsets request for all the batch's
  partitions). Anything after its own claim is a newer claim: the partition
  belongs to someone else now, and the batch's records for it are dropped.

A check that passed stands for a moment (:attr:`Fence.fresh_s`, a quarter of
the session timeout, at most 1 s): losing partitions to another orchestrator
takes a whole session timeout without heartbeats, so a process that passed a
check less than that ago, and has not stopped since, still owns them. A pause
long enough to matter makes the next check due.

The claim is appended before the take-over scan reads the output partitions'
tails (:mod:`streams.recovery`), so a zombie's write either lands before the
claim (and the new owner's scan sees it and does not repeat it) or after it
(and the zombie's check finds the claim). What remains is the window between
a zombie's check and its write, a few milliseconds, which only a broker that
fences producers could close.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable

from confluent_kafka import KafkaError, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from streams.config import Settings
from streams.kafka import admin
from streams.topics import Topics
from streams.writer import Writer


class Fence:
    """One orchestrator's claims on its partitions, and the check that they still hold."""

    def __init__(self, settings: Settings, writer: Writer, timeout_s: float = 30.0) -> None:
        self.topic = Topics(settings.namespace).owners
        self.owner = f"{settings.worker_name}/{uuid.uuid4().hex[:12]}"  # this process, not just this name
        self.timeout_s = timeout_s
        self._writer = writer
        self._admin = admin(settings)  # kept: a collected AdminClient strands its futures (broker facts)
        self._claims: dict[int, int] = {}  # partition -> offset of our claim in the owners topic
        self._checked: dict[int, float] = {}  # partition -> monotonic time its claim was last seen to hold
        self.fresh_s = min(1.0, settings.session_timeout_ms / 4000)

    def claim(self, partitions: Iterable[int]) -> None:
        """Append our claim to each partition (acknowledged) and remember where it landed."""
        landed: dict[int, int] = {}

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                landed[msg.partition() or 0] = msg.offset() or 0

        for p in partitions:
            value = json.dumps({"owner": self.owner, "claimed_at_ms": int(time.time() * 1000)}).encode()
            self._writer.send(self.topic, value, key=str(p), partition=p, on_delivery=delivered)
        self._writer.flush()
        self._claims.update(landed)
        now = time.monotonic()
        self._checked.update(dict.fromkeys(landed, now))

    def release(self, partitions: Iterable[int]) -> None:
        """Forget our claims on partitions we gave up."""
        for p in partitions:
            self._claims.pop(p, None)
            self._checked.pop(p, None)

    def fenced(self, partitions: Collection[int]) -> set[int]:
        """Those of ``partitions`` that we hold no claim on, or whose latest claim is not ours."""
        ours = {p for p in partitions if p in self._claims}
        lost = set(partitions) - ours
        now = time.monotonic()
        due = {p for p in ours if now - self._checked.get(p, 0.0) >= self.fresh_s}
        if due:
            asked = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in due}  # type: ignore[no-untyped-call]
            answers = self._admin.list_offsets(asked, request_timeout=self.timeout_s)
            for tp, future in answers.items():
                if future.result(timeout=self.timeout_s).offset > self._claims[tp.partition] + 1:
                    lost.add(tp.partition)
                else:
                    self._checked[tp.partition] = now
        return lost
