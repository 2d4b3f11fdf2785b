"""Building dead letters: an unprocessable record, why, and where it came from."""

from __future__ import annotations

import time

from confluent_kafka import Message

from schemas.models import DeadLetter

MAX_PAYLOAD = 64 * 1024


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """Stable per source record, so re-processing the record cannot add a second one."""
    return f"{topic}:{partition}:{offset}"


def from_message(
    msg: Message, reason: str, error_type: str, run_id: str | None = None, step: str | None = None
) -> DeadLetter:
    payload = msg.value() or b""
    topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
    return DeadLetter(
        dead_letter_id=dead_letter_id(topic, partition, offset),
        reason=reason[:2000],
        error_type=error_type,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        run_id=run_id,
        step=step,
        payload=payload[:MAX_PAYLOAD],
        payload_truncated=len(payload) > MAX_PAYLOAD,
        at_ms=int(time.time() * 1000),
    )
