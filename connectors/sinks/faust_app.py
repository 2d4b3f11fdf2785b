"""A Faust app for a sink: :func:`connectors.faust.app_settings` plus what sinks add.

Sinks run ``at_least_once`` (exactly-once cannot start on the embedded broker)
and make every write idempotent; they commit acknowledged offsets every second
(the most a crash makes a sink re-apply), need no leader topic and keep their
data directory under the state directory.
"""

from __future__ import annotations

from pathlib import Path

import faust

from connectors.faust import app_settings
from streams.config import Settings
from streams.wall import is_embedded

# Offsets of acknowledged records are committed this often: the most a crash makes a sink re-apply.
COMMIT_INTERVAL_S = 1.0


def sink_app(settings: Settings, sink: str, web_port: int | None = None, store: str = "memory://") -> faust.App:
    """The Faust app of one sink in one namespace; its id is the consumer group, so sinks of a kind share work.

    ``store`` is where its tables live (``rocksdb://``: RocksDB through rocksdict, under the data directory).
    """
    app_id = f"{settings.namespace}.sink.{sink}"
    datadir: Path = settings.state_dir / "sinks" / sink
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    # The embedded broker reports a partition's end as its last batch's first offset + 1, and Faust's table
    # recovery trusts that end: it stopped short of a last batch of several changelog records (entries lost)
    # or refused to start (ConsistencyError: its own stored offset past that "end"). One record per batch
    # makes the reported end exact (notes/broker-facts.md).
    one_per_batch = 1 if is_embedded(settings) else None  # None: Faust's default
    return faust.App(
        app_id,
        **app_settings(settings.bootstrap_servers, web_port),
        broker_commit_interval=COMMIT_INTERVAL_S,
        # No leader election topic: sinks assign nothing themselves.
        topic_disable_leader=True,
        topic_partitions=settings.partitions,
        datadir=str(datadir),
        store=store,
        autodiscover=False,
        producer_max_batch_size=one_per_batch,
    )
