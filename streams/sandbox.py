"""Replay an incident window in a sandbox: the same inputs, the current code, old and new outputs diffed.

The inputs of the window are read (never consumed by a group) from the
production namespace's input topic and written, byte for byte and with the
same keys and partitions, to the input topic of a sandbox namespace, where a
worker of its own (own topics, consumer groups and state) runs them.
Production topics receive nothing.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Message, TopicPartition

from processors.engine.replay import OutputDiff, diff_outputs
from processors.engine.workflow import Workflow
from schemas import DecodeError, decode
from streams.config import Settings
from streams.kafka import read_to_end, reader
from streams.offsets import bounds, offset_for_time, partitions_of
from streams.reading import read_all
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.writer import Writer


class SandboxIsProduction(ValueError):
    """The sandbox namespace must differ from the namespace being replayed."""


@dataclass(frozen=True)
class WindowReplay:
    """What a window replay ran and found."""

    sandbox: str
    inputs: int
    runs: int
    diffs: list[OutputDiff]
    elapsed_s: float

    def count(self, kind: str) -> int:
        return sum(1 for d in self.diffs if d.kind == kind)


def window_inputs(settings: Settings, topic: str, from_ms: int, to_ms: int) -> list[Message]:
    """The records of ``topic`` whose timestamps fall in [from_ms, to_ms), partition by partition in order."""
    found: list[Message] = []
    for p in partitions_of(settings, topic):
        low, end = bounds(settings, topic, p)
        start, _ = offset_for_time(settings, topic, p, from_ms, low, end)
        if start >= end:
            continue
        c = reader(settings)
        try:
            for msg in read_to_end(c, [TopicPartition(topic, p, start)]):
                if from_ms <= msg.timestamp()[1] < to_ms:
                    found.append(msg)
        finally:
            c.close()
    return found


def latest_outputs(settings: Settings, topic: str, run_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The last output written for each of ``run_ids`` (a redriven run's latest output is its output)."""
    out: dict[str, dict[str, Any]] = {}
    for msg in read_all(settings, topic):
        try:
            _, value = decode(msg.value() or b"")
        except DecodeError:
            continue
        run_id = str(value.get("run_id", ""))
        if run_id in run_ids:
            out[run_id] = value
    return out


def replay_window(
    settings: Settings,
    workflow: Workflow,
    from_ms: int,
    to_ms: int,
    sandbox: str,
    *,
    ignore: frozenset[str] = frozenset(),
    timeout_s: float = 120.0,
) -> WindowReplay:
    """Re-run the window's inputs of ``workflow`` in namespace ``sandbox`` and diff the outputs by run."""
    if sandbox == settings.namespace:
        raise SandboxIsProduction(f"the sandbox namespace must not be {settings.namespace!r}, the one replayed")
    started = time.monotonic()
    prod, box = Topics(settings.namespace), Topics(sandbox)
    inputs = window_inputs(settings, prod.name(workflow.input_topic), from_ms, to_ms)
    run_ids: set[str] = set()
    for msg in inputs:
        try:
            _, record = decode(msg.value() or b"", expect=workflow.input_schema)
            run_ids.add(workflow.run_id_of(record))
        except (DecodeError, KeyError, ValueError):
            continue  # production dead-lettered it; the sandbox will too
    old = latest_outputs(settings, prod.name(workflow.output_topic), run_ids)

    with tempfile.TemporaryDirectory(prefix="durable-sandbox-") as state_dir:
        box_settings = replace(settings, namespace=sandbox, state_dir=Path(state_dir), worker_name="sandbox")
        ensure_topics(box_settings, [box.name(workflow.input_topic), box.name(workflow.output_topic)])
        worker = Worker(box_settings, [workflow]).start()
        try:
            _copy(box_settings, box.name(workflow.input_topic), inputs)
            deadline = time.monotonic() + timeout_s
            new: dict[str, dict[str, Any]] = {}
            while time.monotonic() < deadline and not worker.failed:
                new = latest_outputs(box_settings, box.name(workflow.output_topic), run_ids)
                if set(new) >= run_ids:
                    break
                time.sleep(0.5)  # polling the sandbox's outputs, bounded by the deadline
            if worker.failed:
                raise RuntimeError(f"sandbox worker failed: {worker.failed}")
        finally:
            worker.stop()
            worker.join(20)
    return WindowReplay(sandbox, len(inputs), len(run_ids), diff_outputs(old, new, ignore), time.monotonic() - started)


def _copy(settings: Settings, topic: str, records: list[Message]) -> None:
    writer = Writer(settings)
    try:
        for msg in records:
            writer.send(topic, msg.value() or b"", key=msg.key(), partition=msg.partition() or 0)
        writer.flush(30)
    finally:
        writer.close()
