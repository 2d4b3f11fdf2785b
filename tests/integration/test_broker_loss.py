"""Broker loss and restart (issue 13.1): a worker never mixes its old local state with a new log.

Each test runs its own embedded broker, so it can kill, restart or pause it without touching the
session's. A restart of the in-memory broker loses every topic: the worker must notice, say so and
exit 75, and once restarted discard its state and work on the new log. An outage of the same broker,
which comes back with its log, must change nothing: the worker waits and resumes.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from streams.broker import EmbeddedBroker
from streams.brokerwatch import EXIT_BROKER_LOST
from streams.config import Settings
from tests.conftest import WorkerProcesses, wait_for
from tests.helpers import assert_exactly_once, decisions, produce, sample_claims


def _decided(settings: Settings) -> set[str]:
    return {d["run_id"] for d in decisions(settings)}


def test_a_broker_restarted_empty_on_the_same_port_stops_the_worker_which_restarted_starts_clean(
    own_broker: list[EmbeddedBroker], on_own_broker: tuple[Settings, WorkerProcesses]
) -> None:
    settings, workers = on_own_broker
    worker = workers.start("w1")
    before = sample_claims(8, prefix="OLD")
    produce(settings, before)
    wait_for(lambda: len(_decided(settings)) >= len(before), 120, "decisions before the restart")

    old = own_broker[0]
    assert old.pid is not None
    os.kill(old.pid, signal.SIGKILL)  # as `kill -9` of `durable broker`: its in-memory log is gone
    old.stop()
    own_broker.append(EmbeddedBroker(port=old.port, log_path=old.log_path).start())

    wait_for(lambda: worker.poll() is not None, 90, "the worker to stop on the emptied broker")
    assert worker.returncode == EXIT_BROKER_LOST, workers.log("w1")[-3000:]
    log = workers.log("w1")
    assert "BROKER LOST ITS LOG" in log and "CRITICAL" in log, log[-3000:]

    # Restarted by its supervisor (here: the test), with the same state directory.
    restarted = workers.start("w1")
    after = sample_claims(8, prefix="NEW")
    produce(settings, after)
    wait_for(lambda: len(_decided(settings)) >= len(after) or restarted.poll() is not None, 120, "new decisions")
    assert restarted.poll() is None, workers.log("w1")[-3000:]
    assert "emptied, restoring from the log" in workers.log("w1"), "the old local state was discarded"
    # The new log holds the new runs only, each decided once: nothing of the old state leaked into it.
    assert _decided(settings) == {c.run_id for c in after}
    assert_exactly_once(settings, {c.run_id for c in after})


def test_a_broker_outage_of_30_s_loses_nothing_and_the_worker_resumes(
    own_broker: list[EmbeddedBroker], on_own_broker: tuple[Settings, WorkerProcesses]
) -> None:
    settings, workers = on_own_broker
    worker = workers.start("w1")
    before = sample_claims(6, prefix="PRE")
    produce(settings, before)
    wait_for(lambda: len(_decided(settings)) >= len(before), 120, "decisions before the outage")

    broker = own_broker[0]
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)  # the broker stops answering; its log stays as it was
    try:
        wait_for(lambda: "does not answer" in workers.log("w1"), 30, "the worker to notice the outage")
        time.sleep(30)  # the outage itself (not a synchronisation): longer than the 6 s session timeout
        assert worker.poll() is None, "an outage is not a loss: the worker must wait"
    finally:
        os.kill(broker.pid, signal.SIGCONT)

    wait_for(lambda: "answers again" in workers.log("w1"), 60, "the worker to see the broker back")
    after = sample_claims(6, prefix="POST")
    produce(settings, after)
    every = {c.run_id for c in before + after}
    wait_for(lambda: _decided(settings) >= every or worker.poll() is not None, 180, "decisions after the outage")
    assert worker.poll() is None, workers.log("w1")[-3000:]
    assert "BROKER LOST" not in workers.log("w1")
    assert_exactly_once(settings, every)
    assert not [r for r, n in Counter(d["run_id"] for d in decisions(settings)).items() if n > 1]
