"""Faust app settings that join fast and stay stable on the embedded broker (and are fine on real Kafka).

Measured on Tansu 0.6.0 with aiokafka 0.14 (DESIGN.md): a group's first join
waits about half the session timeout, so Faust's defaults (60 s) take 30 s
to start; with a 10 s max poll interval a busy Faust worker was evicted and
never rejoined. These held: session 6 s, heartbeat 1 s, rebalance 6 s, max
poll interval 300 s, and a web port of its own per worker (two workers on one
host clash on 6066 even with the web server disabled). Exactly-once cannot
start on that broker (aiokafka's InitProducerId fails): ``at_least_once``,
so whatever an app writes must be idempotent.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import faust

from streams.kafka_config import KafkaConfigError, security_config

SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
REBALANCE_TIMEOUT_S = 6.0
MAX_POLL_INTERVAL_S = 300.0


def free_port() -> int:
    """A loopback port nobody listens on now (Faust's web port, which must differ per worker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def brokers(bootstrap_servers: str) -> list[str]:
    """Faust's broker URLs for a librdkafka-style ``host:port,host:port`` list."""
    return [f"kafka://{hp.strip()}" for hp in bootstrap_servers.split(",") if hp.strip()]


def credentials(config: dict[str, str] | None = None) -> faust.types.auth.CredentialsT | None:
    """Faust credentials from the project's Kafka security settings (``DURABLE_KAFKA_CONFIG``, ``KAFKA_SASL_*``...).

    PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL with PLAIN or SCRAM; anything else is a clear error, never a
    client that quietly connects without the security asked for.
    """
    config = security_config() if config is None else config
    protocol = config.get("security.protocol", "PLAINTEXT")
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        mechanism = config.get("sasl.mechanism") or config.get("sasl.mechanisms", "")
        if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise KafkaConfigError(f"Faust apps support SASL PLAIN and SCRAM, not {mechanism!r}")
        return faust.SASLCredentials(
            username=config.get("sasl.username"),
            password=config.get("sasl.password"),
            mechanism=mechanism,
            ssl_context=context,
        )
    return None


def app_settings(bootstrap_servers: str | None = None, web_port: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: the broker (default: the one ``durable`` uses) and stable settings."""
    if bootstrap_servers is None:
        from streams.discovery import bootstrap_servers as discover

        bootstrap_servers = discover()
    return {
        "broker": brokers(bootstrap_servers),
        "processing_guarantee": "at_least_once",
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "broker_rebalance_timeout": REBALANCE_TIMEOUT_S,
        "broker_max_poll_interval": MAX_POLL_INTERVAL_S,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,
        "web_bind": "127.0.0.1",
        "web_port": web_port or free_port(),
        "broker_credentials": credentials(),
    }
