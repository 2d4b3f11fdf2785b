"""Replay an incident window in a sandbox: the same inputs, the current code, old and new outputs diffed.

The inputs of the window are read (never consumed by a group) from the
production namespace's input topic and written, byte for byte and with the
same keys and partitions, to the input topic of a sandbox namespace, where a
worker of its own (own topics, consumer groups and state) runs them.
Production topics receive nothing.

A sandbox is a namespace the replay created: before writing anything it
checks that the namespace has no topics and no consumer groups, then creates
the marker topic ``<sandbox>.sandbox`` (one record: what was replayed, when,
by whom). Any other namespace is refused (:class:`SandboxRefused`): one that
is not a sandbox (a live namespace, ``main``), and an earlier sandbox too,
whose old outputs would mix with the new ones. So the replay's worker only
ever joins the groups of a namespace made for it.
"""

from __future__ import annotations

import getpass
import json
import os
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
from streams.kafka import admin, read_to_end, reader
from streams.offsets import bounds, offset_for_time, partitions_of
from streams.reading import read_all
from streams.telemetry import Telemetry
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.writer import Writer


class SandboxRefused(ValueError):
    """The namespace asked for is not a fresh sandbox: the replay will not write into it."""


class SandboxIsProduction(SandboxRefused):
    """The sandbox namespace must differ from the namespace being replayed."""


# Refused by name even when empty: ``main`` is where production runs by default.
RESERVED = frozenset({"main"})


def marker_topic(namespace: str) -> str:
    """The topic whose existence marks ``namespace`` as a replay sandbox."""
    return Topics(namespace).name("sandbox")


def namespace_in_use(settings: Settings, namespace: str) -> tuple[list[str], list[str]]:
    """The topics and the consumer groups (any state) of ``namespace`` on the broker."""
    a = admin(settings)
    prefix = f"{namespace}."
    topics = sorted(t for t in a.list_topics(timeout=10).topics if t.startswith(prefix))
    listed = a.list_consumer_groups().result(timeout=15)
    groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))
    return topics, groups


def is_sandbox(settings: Settings, namespace: str) -> bool:
    """True if a replay created ``namespace`` (its marker topic exists)."""
    return marker_topic(namespace) in admin(settings).list_topics(timeout=10).topics


def claim_sandbox(settings: Settings, sandbox: str) -> None:
    """Make ``sandbox`` a new sandbox of ``settings.namespace``, or raise :class:`SandboxRefused` saying why."""
    if sandbox == settings.namespace:
        raise SandboxIsProduction(f"the sandbox namespace must not be {settings.namespace!r}, the one replayed")
    if not sandbox or any(c in sandbox for c in "./ "):
        raise SandboxRefused(f"sandbox name {sandbox!r} must be a plain namespace name (no '.', '/' or spaces)")
    if sandbox in RESERVED:
        raise SandboxRefused(f"namespace {sandbox!r} is the default production namespace, never a sandbox")
    topics, groups = namespace_in_use(settings, sandbox)
    if topics or groups:
        what = ", ".join([*(f"topic {t}" for t in topics[:3]), *(f"group {g}" for g in groups[:3])])
        if marker_topic(sandbox) in topics:
            raise SandboxRefused(
                f"namespace {sandbox!r} is a sandbox of an earlier replay ({what}); its old outputs would mix "
                "with the new ones: choose a new --sandbox name"
            )
        raise SandboxRefused(
            f"namespace {sandbox!r} is not a sandbox (no marker topic {marker_topic(sandbox)}) and is in use "
            f"({what}): a replay writes only into a new namespace it creates; choose another --sandbox name"
        )
    box = replace(settings, namespace=sandbox)
    ensure_topics(box, [marker_topic(sandbox)])
    note = {
        "replay_of": settings.namespace,
        "created_at_ms": int(time.time() * 1000),
        "by": getpass.getuser(),
        "pid": os.getpid(),
    }
    writer = Writer(box)
    try:
        writer.send(marker_topic(sandbox), json.dumps(note).encode(), key=sandbox.encode(), partition=0)
        writer.flush(30)
    finally:
        writer.close()


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
    export_spans: bool = False,
) -> WindowReplay:
    """Re-run the window's inputs of ``workflow`` in namespace ``sandbox`` and diff the outputs by run.

    The sandbox's spans go to its own traces topic; to the OTLP exporter only with ``export_spans`` (a
    replay must not inflate production telemetry unless asked).
    """
    claim_sandbox(settings, sandbox)  # before anything is written: only a namespace made for this replay
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
        telemetry = Telemetry(box_settings, otlp=export_spans)
        worker = Worker(box_settings, [workflow], telemetry=telemetry).start()
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
