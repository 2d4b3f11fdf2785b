"""The embedded broker's batch wall is measured, shown and kept away from (streams.wall, streams.batches).

On the embedded broker a fetch costs time in proportion to the record batches a
partition holds, and a consumer whose fetch wait is shorter than that receives
nothing, silently (bench/broker_wall.py measures the curve). These tests pin what
a user relies on: batches are counted exactly, `durable broker --status` shows how
far each topic is, a worker warns and exports the ratio, and a worker that must
lengthen its consumers' fetch wait does so without losing or repeating a run.
On a real Kafka cluster none of this applies, and nothing of it runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid

import pytest
from confluent_kafka import Producer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from streams import wall
from streams.batches import BatchCounter
from streams.config import Settings
from streams.kafka_config import client_config
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, wait_for
from tests.helpers import assert_exactly_once, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

EMBEDDED = not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DURABLE_TEST_BROKER") != "testcontainers"


def _single_batches(settings: Settings, topic: str, partition: int, n: int) -> None:
    """``n`` records, each flushed on its own: ``n`` batches."""
    p = Producer(client_config(settings.bootstrap_servers, **{"linger.ms": 0, "log_level": 3}))
    for i in range(n):
        p.produce(topic, f"r{i}".encode(), partition=partition)
        p.flush(10)


def test_the_broker_is_recognised_as_embedded_or_not(settings: Settings) -> None:
    assert wall.is_embedded(settings) == EMBEDDED


def test_batches_are_counted_exactly_and_incrementally(settings: Settings) -> None:
    topic = f"{settings.namespace}.filler"
    ensure_topics(settings, [topic])
    _single_batches(settings, topic, 1, 30)
    batched = Producer(client_config(settings.bootstrap_servers, **{"linger.ms": 200, "log_level": 3}))
    for i in range(50):
        batched.produce(topic, f"b{i}".encode(), partition=1)
    batched.flush(10)
    counter = BatchCounter(settings.bootstrap_servers)
    try:
        first = counter.count(topic, 1)
        assert (first.batches, first.records, first.next_offset) == (31, 80, 80)
        _single_batches(settings, topic, 1, 5)
        again = counter.count(topic, 1)
        assert (again.batches, again.records) == (36, 85)
        assert counter.count(topic, 0).batches == 0  # an empty partition
    finally:
        counter.close()


def test_large_partitions_are_estimated_from_a_few_fetches(settings: Settings) -> None:
    topic = f"{settings.namespace}.filler"
    ensure_topics(settings, [topic])
    _single_batches(settings, topic, 0, 200)
    batched = Producer(client_config(settings.bootstrap_servers, **{"linger.ms": 200, "log_level": 3}))
    for _ in range(20):
        for i in range(50):
            batched.produce(topic, f"b{i}".encode(), partition=0)
        batched.flush(10)
    counter = BatchCounter(settings.bootstrap_servers)
    try:
        guess = counter.estimate(topic, 0).batches
        exact = BatchCounter(settings.bootstrap_servers).count(topic, 0)
        assert (exact.batches, exact.records) == (220, 1200)
        assert abs(guess - 220) <= 0.25 * 220, guess
        _single_batches(settings, topic, 0, 7)
        later = counter.count(topic, 0)
        assert (later.batches, later.next_offset) == (guess + 7, 1207)  # then counted exactly from the end
    finally:
        counter.close()


def test_status_shows_each_topic_and_its_distance_to_the_wall(settings: Settings) -> None:
    topics = Topics(settings.namespace)
    ensure_topics(settings, [topics.results, topics.journal])
    _single_batches(settings, topics.results, 2, 300)
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "broker", "--status", "--namespace", settings.namespace],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    if not EMBEDDED:
        assert "not the embedded broker" in out.stderr
        return
    row = next(line for line in out.stdout.splitlines() if topics.results in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # The topic's largest partition: end offset 300, 300 batches, 300 of the 2,000 priced for a 2 ms wait.
    assert cells[1:4] == ["2", "300", "300"], row
    assert cells[4] == f"{300 / wall.wall_batches(2):.0%}" and cells[6] == "ok", row
    assert topics.journal in out.stdout
    assert "stop receiving" in out.stderr


def test_a_worker_warns_exports_and_asks_for_longer_waits_near_the_wall(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    if not EMBEDDED:
        assert not wall.is_embedded(settings)
        return
    topics = Topics(settings.namespace)
    ensure_topics(settings, [topics.commands, topics.journal])
    _single_batches(settings, topics.commands, 3, 50)
    _single_batches(settings, topics.journal, 0, 50)
    reader = InMemoryMetricReader()
    critical: list[bool] = []
    # Consumers that would wait a microsecond: any lookup is past the wall for them.
    watch = wall.WallWatch(
        settings,
        lambda topic: 0.001,
        threading.Event(),
        reads={topics.commands},
        meter=MeterProvider(metric_readers=[reader]).get_meter("t"),
        on_critical=lambda: critical.append(True),
    )
    with caplog.at_level(logging.WARNING, logger="streams.wall"):
        found = watch.check()
    assert {x.topic for x in found} == {topics.commands}  # only what the worker reads is judged
    assert critical, "the critical fraction did not ask for longer waits"
    assert f"{topics.commands}[3] holds about 50 record batches" in caplog.text
    assert topics.journal not in caplog.text
    metrics = reader.get_metrics_data()
    assert metrics is not None
    points = [
        (dict(p.attributes or {}), p.value)
        for rm in metrics.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "durable.broker.wall_fraction"
        for p in m.data.data_points  # type: ignore[union-attr]
    ]
    by_partition = {(a["topic"], a["partition"]): v for a, v in points}
    assert by_partition[(topics.commands, 3)] > wall.CRITICAL_FRACTION
    assert by_partition[(topics.commands, 0)] == 0  # empty partition: nothing to look up


def test_a_worker_restarts_its_consumers_for_the_wall_without_losing_a_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(**{**settings.__dict__, "low_latency": True})
    w = Worker(s, load_workflows(["tests.workflows:SLOW"]))
    first, second = sample_orders(6, f"A{uuid.uuid4().hex[:4]}"), sample_orders(6, f"B{uuid.uuid4().hex[:4]}")
    seen_parts: list[object] = []
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            wait_for(lambda: w.ready, 60, "the worker's groups to form")
            assert (w.wall_watch is not None) == EMBEDDED
            seen_parts.append(w._parts[0])
            produce_orders(s, first)
            topic = Topics(s.namespace).name(OUTPUT_TOPIC)
            wait_for(lambda: len(_outcomes(s, topic)) >= 6, 60, "the first orders to complete")
            w._wall_critical()  # what the watch does at the critical fraction
            wait_for(lambda: w.ready and w._parts and w._parts[0] is not seen_parts[0], 60, "new consumers")
            produce_orders(s, second)
            wait_for(lambda: len(_outcomes(s, topic)) >= 12, 60, "the second orders to complete")
        except BaseException as exc:
            errors.append(exc)
        finally:
            w.stop()

    driver = threading.Thread(target=drive)
    driver.start()
    handlers = (signal_handler("SIGINT"), signal_handler("SIGTERM"))
    try:
        with caplog.at_level(logging.WARNING, logger="streams.worker"):
            code = w.run_forever()
    finally:
        restore(handlers)
        driver.join(120)
    assert not errors, errors
    assert code == 0
    assert "restarting this worker's consumers" in caplog.text
    assert_exactly_once(s, {o.run_id for o in first + second}, OUTPUT_TOPIC)


def _outcomes(settings: Settings, topic: str) -> list[dict[str, object]]:
    from tests.conftest import read_topic

    return read_topic(settings, topic)


def signal_handler(name: str) -> tuple[int, object]:
    import signal

    num = getattr(signal, name)
    return num, signal.getsignal(num)


def restore(handlers: tuple[tuple[int, object], ...]) -> None:
    import signal

    for num, handler in handlers:
        signal.signal(num, handler)  # type: ignore[arg-type]
