"""Finding the broker: ``KAFKA_BOOTSTRAP_SERVERS``, else the embedded broker this checkout runs.

``durable broker`` records its address in ``.durable/broker.json``; other
commands read it from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from streams.broker import EmbeddedBroker

RECORD = Path(".durable/broker.json")


class NoBroker(RuntimeError):
    """No broker is configured or running."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def record(broker: EmbeddedBroker) -> None:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(
        json.dumps({"bootstrap_servers": broker.bootstrap_servers, "pid": broker.pid, "owner": os.getpid()})
    )


def forget(broker: EmbeddedBroker) -> None:
    try:
        data = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return
    if data.get("bootstrap_servers") == broker.bootstrap_servers:
        RECORD.unlink(missing_ok=True)


def bootstrap_servers() -> str:
    """The broker to use, or :class:`NoBroker` with what to do about it."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env
    try:
        data = json.loads(RECORD.read_text())
        if _alive(int(data["pid"])):
            return str(data["bootstrap_servers"])
    except (OSError, ValueError, KeyError):
        pass
    raise NoBroker("no broker: set KAFKA_BOOTSTRAP_SERVERS or start one with `durable broker`")
