"""The embedded broker: starts on a free port, answers, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from streams.broker import BrokerStartError, EmbeddedBroker
from tests.conftest import ROOT, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not alive either.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _tansu_children(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_starts_answers_and_stops() -> None:
    with EmbeddedBroker() as broker:
        pid = broker.pid
        assert pid is not None and _alive(pid)
        topics = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=5)
        assert topics.brokers, "the broker answers a metadata request"
    assert not _alive(pid)


def test_port_in_use_is_a_clear_error() -> None:
    with EmbeddedBroker() as first, pytest.raises(BrokerStartError):
        EmbeddedBroker(port=first.port).start(timeout_s=5)


def test_broker_dies_with_a_parent_killed_by_sigkill() -> None:
    code = "from streams.broker import EmbeddedBroker; import time; b = EmbeddedBroker().start(); print(b.pid, flush=True); time.sleep(600)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        broker_pid = int((parent.stdout.readline() if parent.stdout else "").strip())
        assert _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not _alive(broker_pid), 10, "the broker to die with its parent")
    finally:
        parent.kill()


def test_durable_broker_prints_its_address_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
        bootstrap = line.strip().split("=", 1)[1]
        assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).brokers
        children = _tansu_children(proc.pid)
        assert children, "tansu runs as a child of `durable broker`"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"`durable broker` still running 15 s after Ctrl-C; its stderr:\n{err}") from None
        assert code == 0, proc.communicate(timeout=10)[1]
        for child in children:
            wait_for(lambda c=child: not _alive(c), 10, "no orphan broker after Ctrl-C")
    finally:
        proc.kill()
