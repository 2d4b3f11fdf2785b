"""Runtime settings, read from the environment (``DURABLE_*``, ``KAFKA_BOOTSTRAP_SERVERS``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


DAY_S = 86_400.0


@dataclass(frozen=True)
class Settings:
    """Where the broker is, which namespace of topics to use, and how to behave.

    ``namespace`` prefixes every topic and consumer group, so a replay sandbox
    or a second tenant never touches another namespace's topics.
    """

    bootstrap_servers: str = ""
    namespace: str = "main"
    partitions: int = 4
    state_dir: Path = Path(".durable/state")
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_batch: int = 500
    # Runs one orchestrator keeps in flight; inputs past it wait, in order, on their partitions (a burst
    # is decided at the engine's pace instead of every run slowing down together).
    max_runs_in_flight: int = 100
    # The largest record the orchestrator writes (value bytes; librdkafka refuses messages over 1,000,000).
    max_record_bytes: int = 950_000
    executor_concurrency: int = 256
    # Short fetch waits and consume slices: ~10 ms per step over Kafka instead of ~300 ms on the
    # embedded broker. On by default (DURABLE_LOW_LATENCY=0 turns it off); they make the broker's
    # wedged-group bug easier to hit, which the group watch recovers from (streams.groupwatch).
    low_latency: bool = True
    # A group member rebalancing this long with its coordinator up is stuck: its consumers are re-created.
    group_stuck_s: float = 30.0
    # How often a worker re-measures the embedded broker's partitions against its wall (streams.wall).
    wall_probe_s: float = 30.0
    # Bounded state (streams.retention): a finished run leaves the run table this long after its last
    # change (0: never), leaving a small "expired" marker that recognises re-submissions for
    # ``expired_marker_s`` more before it too is deleted.
    run_retention_s: float = 7 * DAY_S
    expired_marker_s: float = 30 * DAY_S
    # Topic retention by role, set when a topic is created (real Kafka; the embedded broker ignores it):
    # step commands, results and run controls are short-lived; journal, workflow inputs/outputs, dead letters long.
    short_topic_retention_s: float = 3 * DAY_S
    long_topic_retention_s: float = 90 * DAY_S

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        base = cls(
            bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ""),
            namespace=os.environ.get("DURABLE_NAMESPACE", "main"),
            partitions=_env_int("DURABLE_PARTITIONS", 4),
            max_runs_in_flight=_env_int("DURABLE_MAX_RUNS_IN_FLIGHT", 100),
            state_dir=Path(os.environ.get("DURABLE_STATE_DIR", ".durable/state")),
            low_latency=os.environ.get("DURABLE_LOW_LATENCY", "1") != "0",
            group_stuck_s=float(os.environ.get("DURABLE_GROUP_STUCK_S") or 30.0),
            wall_probe_s=float(os.environ.get("DURABLE_WALL_PROBE_S") or 30.0),
            run_retention_s=_env_float("DURABLE_RUN_RETENTION_S", 7 * DAY_S),
            expired_marker_s=_env_float("DURABLE_EXPIRED_MARKER_S", 30 * DAY_S),
            short_topic_retention_s=_env_float("DURABLE_SHORT_RETENTION_S", 3 * DAY_S),
            long_topic_retention_s=_env_float("DURABLE_LONG_RETENTION_S", 90 * DAY_S),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **clean)  # type: ignore[arg-type]

    def with_bootstrap(self, bootstrap: str) -> Settings:
        return replace(self, bootstrap_servers=bootstrap)
