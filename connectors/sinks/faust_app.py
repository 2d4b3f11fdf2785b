"""A Faust app for a sink, with the settings that join fast and stay stable on the embedded broker.

Measured on Tansu 0.6.0 with aiokafka 0.14 (DESIGN.md): a group's first join
waits about half the session timeout, so Faust's defaults (60 s) take 30 s
to start; with a 10 s max poll interval a busy Faust worker was evicted and
never rejoined. These held: session 6 s, heartbeat 1 s, rebalance 6 s, max
poll interval 300 s, and a web port of its own per worker (two workers on one
host clash on 6066 even with the web server disabled). Exactly-once cannot
start on that broker (aiokafka's InitProducerId fails), so sinks run
``at_least_once`` and make every write idempotent instead.
"""

from __future__ import annotations

import socket
from pathlib import Path

import faust

from streams.config import Settings

SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
REBALANCE_TIMEOUT_S = 6.0
MAX_POLL_INTERVAL_S = 300.0
# Offsets of acknowledged records are committed this often: the most a crash makes a sink re-apply.
COMMIT_INTERVAL_S = 1.0


def free_port() -> int:
    """A loopback port nobody listens on now (for Faust's web port, which must differ per worker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def brokers(bootstrap_servers: str) -> list[str]:
    """Faust's broker URLs for a librdkafka-style ``host:port,host:port`` list."""
    return [f"kafka://{hp.strip()}" for hp in bootstrap_servers.split(",") if hp.strip()]


def sink_app(settings: Settings, sink: str, web_port: int | None = None) -> faust.App:
    """The Faust app of one sink in one namespace; its id is the consumer group, so sinks of a kind share work."""
    app_id = f"{settings.namespace}.sink.{sink}"
    datadir: Path = settings.state_dir / "sinks" / sink
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return faust.App(
        app_id,
        broker=brokers(settings.bootstrap_servers),
        processing_guarantee="at_least_once",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        broker_max_poll_interval=MAX_POLL_INTERVAL_S,
        broker_commit_interval=COMMIT_INTERVAL_S,
        # A new sink starts from the oldest decision, so a fresh database gets every decision still on Kafka.
        consumer_auto_offset_reset="earliest",
        # No leader election topic: sinks assign nothing themselves.
        topic_disable_leader=True,
        topic_partitions=settings.partitions,
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=web_port or free_port(),
        datadir=str(datadir),
        autodiscover=False,
    )
