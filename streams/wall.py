"""The embedded broker's scale wall: see it coming, and keep consumers clear of it.

Measured on Tansu 0.6.0 (``bench/broker_wall.py``, notes/broker-facts.md): serving
a fetch costs the broker time in proportion to the record batches the partition
holds (about 0.5 µs a batch on the 2-core machines here), and when that time
exceeds the consumer's ``fetch.wait.max.ms`` the broker answers with nothing,
every time: the consumer stops for good, without an error. With the engine's
2 ms low-latency fetch wait that happens at about 5,000 batches in a partition;
with librdkafka's default 500 ms wait, not before a million.

So what matters is a partition's batch count against the fetch wait of the
consumers that read it. This module

- counts batches (:mod:`streams.batches`: an estimate from a few sampled
  fetches, then exact counts of what is appended), on the embedded broker only:
  a real Kafka cluster has no such wall, and nothing here runs or prints there;
- prices them at :data:`LOOKUP_US_PER_BATCH` (twice the measured cost, for a
  busy broker) and gives new consumers a fetch wait of at least
  :data:`HEADROOM` times their slowest partition's price (:func:`fetch_wait_ms`),
  so a worker started against big partitions slows a little instead of stopping;
- watches the ratio while a worker runs (:class:`WallWatch`): a warning at
  :data:`WARN_FRACTION`, an error at :data:`CRITICAL_FRACTION`, and the
  ``durable.broker.wall_fraction`` gauge; ``durable broker --status`` prints it.

A running consumer's fetch wait cannot change: at the critical fraction a
low-latency worker stops its consumers cleanly and starts new ones with a wait
that fits (:meth:`streams.worker.Worker.run_forever`). Each step of that costs
latency on every hop; the lasting remedies are fewer batches and, for sustained
load, real Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from streams.batches import BatchCounter, ProbeFailed
from streams.config import Settings
from streams.kafka_config import client_config, security_config

log = logging.getLogger(__name__)

LOOKUP_US_PER_BATCH = 1.0  # measured 0.5 µs (bench/broker_wall.py); doubled for a broker that is also busy
WARN_FRACTION = 0.5  # priced lookup at half the fetch wait: warn
CRITICAL_FRACTION = 0.8  # close enough that load spikes already starve reads
HEADROOM = 4  # new consumers wait at least 4x their slowest partition's priced lookup
MAX_FETCH_WAIT_MS = 500  # librdkafka's default: past this, the broker is simply too full
CACHE_S = 30.0  # how long a measurement stands for new consumers


@dataclass(frozen=True)
class PartitionSize:
    """One partition: its end offset and (estimated, then counted) record batches."""

    topic: str
    partition: int
    end_offset: int
    batches: int

    @property
    def lookup_ms(self) -> float:
        """What serving a fetch of this partition is priced at (see :data:`LOOKUP_US_PER_BATCH`)."""
        return self.batches * LOOKUP_US_PER_BATCH / 1000

    def fraction(self, fetch_wait_ms: float) -> float:
        """How far this partition is towards the wall for consumers waiting ``fetch_wait_ms``."""
        return self.lookup_ms / max(fetch_wait_ms, 1e-9)


def wall_batches(fetch_wait_ms: float) -> int:
    """The batch count at which consumers waiting ``fetch_wait_ms`` are priced to stop receiving."""
    return int(fetch_wait_ms * 1000 / LOOKUP_US_PER_BATCH)


def _admin(settings: Settings) -> AdminClient:
    # Not streams.kafka.admin: streams.kafka asks this module for fetch waits.
    return AdminClient(client_config(settings.bootstrap_servers, log_level=3))


_embedded: dict[str, bool] = {}
_waits: dict[tuple[str, str, frozenset[str] | None], tuple[float, int]] = {}
_lock = threading.Lock()


def is_embedded(settings: Settings) -> bool:
    """Whether ``settings`` name the embedded Tansu broker (its cluster id says so); remembered per address."""
    with _lock:
        known = _embedded.get(settings.bootstrap_servers)
    if known is not None:
        return known
    try:
        cluster = _admin(settings).list_topics(timeout=2).cluster_id or ""
    except Exception:  # no answer yet: decide on a later call
        return False
    # The probe speaks plaintext only; a secured listener is not the one the runtime starts.
    plaintext = security_config().get("security.protocol", "PLAINTEXT") == "PLAINTEXT"
    embedded = cluster.startswith("tansu") and plaintext
    with _lock:
        _embedded[settings.bootstrap_servers] = embedded
    return embedded


def namespace_topics(settings: Settings, only: Collection[str] | None = None) -> dict[str, int]:
    """The namespace's topics that exist now (or those of them named in ``only``), with their partition counts."""
    metadata = _admin(settings).list_topics(timeout=10)
    prefix = f"{settings.namespace}."
    return {
        name: len(t.partitions)
        for name, t in metadata.topics.items()
        if name.startswith(prefix) and (only is None or name in only)
    }


class Sizes:
    """Batch counts of a set of partitions, estimated once and then kept up to date incrementally."""

    def __init__(self, settings: Settings, only: Collection[str] | None = None) -> None:
        self.settings = settings
        self.only = only
        self.counter = BatchCounter(settings.bootstrap_servers)

    def measure(self) -> list[PartitionSize]:
        """Every partition's size now, largest first."""
        found: list[PartitionSize] = []
        for topic, partitions in sorted(namespace_topics(self.settings, self.only).items()):
            for p in range(partitions):
                if (topic, p) in self.counter.seen:
                    state = self.counter.count(topic, p, max_fetches=200)
                else:
                    state = self.counter.estimate(topic, p)
                found.append(PartitionSize(topic, p, state.next_offset, state.batches))
        return sorted(found, key=lambda x: -x.batches)

    def close(self) -> None:
        self.counter.close()


def measure(settings: Settings, only: Collection[str] | None = None) -> list[PartitionSize]:
    """Sizes of every partition of the namespace's topics (or of those named in ``only``), largest first."""
    sizes = Sizes(settings, only)
    try:
        return sizes.measure()
    finally:
        sizes.close()


def fetch_wait_ms(settings: Settings, floor_ms: int, reads: Collection[str] | None = None) -> int:
    """The fetch wait for a new consumer of ``reads`` (default: any topic of the namespace).

    ``floor_ms``, or more when a partition is large; measured at most once per
    :data:`CACHE_S` for the same topics.
    """
    if not is_embedded(settings):
        return floor_ms
    key = (settings.bootstrap_servers, settings.namespace, frozenset(reads) if reads is not None else None)
    now = time.monotonic()
    with _lock:
        cached = _waits.get(key)
    if cached is None or now - cached[0] > CACHE_S:
        try:
            largest = max(measure(settings, reads), key=lambda x: x.batches, default=None)
        except Exception as exc:  # a probe must never stop a consumer from being made
            log.debug("wall probe failed: %s", exc)
            largest = None
        priced = largest.lookup_ms if largest else 0.0
        cached = (now, min(MAX_FETCH_WAIT_MS, int(HEADROOM * priced) + 1))
        with _lock:
            _waits[key] = cached
        if largest is not None and cached[1] > floor_ms:
            log.warning(
                "embedded broker: %s[%d] holds about %d record batches; new consumers wait %d ms per fetch"
                " instead of %d ms, which adds up to that much latency to every hop",
                largest.topic,
                largest.partition,
                largest.batches,
                cached[1],
                floor_ms,
            )
    return max(floor_ms, cached[1])


def forget(settings: Settings) -> None:
    """Drop the cached measurements of ``settings``' namespace: the next consumer is sized afresh."""
    with _lock:
        for key in [k for k in _waits if k[:2] == (settings.bootstrap_servers, settings.namespace)]:
            del _waits[key]


def severity(fraction: float) -> str:
    """``ok``, ``warning`` or ``critical`` for a priced-lookup / fetch-wait ratio."""
    if fraction >= CRITICAL_FRACTION:
        return "critical"
    return "warning" if fraction >= WARN_FRACTION else "ok"


class WallWatch:
    """Re-measures the partitions a worker reads every ``interval_s``; logs and exports their ratio to its fetch wait."""

    def __init__(
        self,
        settings: Settings,
        fetch_wait: Callable[[str], float],
        stop: threading.Event,
        reads: Collection[str] | None = None,
        interval_s: float = 30.0,
        meter: Meter | None = None,
        on_critical: Callable[[], None] | None = None,
    ) -> None:
        self.fetch_wait = fetch_wait
        self.stop = stop
        self.interval_s = interval_s
        self.on_critical = on_critical
        self.sizes = Sizes(settings, reads)
        self.last: list[PartitionSize] = []
        self._thread = threading.Thread(target=self._run, name="WallWatch", daemon=True)
        if meter is not None:
            meter.create_observable_gauge(
                "durable.broker.wall_fraction",
                callbacks=[self._observe],
                description="embedded broker: priced partition lookup / consumer fetch wait (1 = reads stop)",
            )

    def start(self) -> WallWatch:
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the watch to end (after its stop event is set)."""
        self._thread.join(timeout_s)

    def check(self) -> list[PartitionSize]:
        """Measure once, log what is near the wall, and return the measurement."""
        self.last = self.sizes.measure()
        critical = False
        for x in self.last:
            wait = self.fetch_wait(x.topic)
            level = severity(x.fraction(wait))
            if level == "ok":
                continue
            critical = critical or level == "critical"
            log.log(
                logging.ERROR if level == "critical" else logging.WARNING,
                "embedded broker wall: %s[%d] holds about %d record batches, %.0f%% of the %d at which consumers"
                " waiting %.0f ms per fetch stop receiving. Restart workers to lengthen the wait (low-latency"
                " workers do it themselves; every hop then waits longer), roll to a fresh namespace (README:"
                " 'Rolling a namespace'), or move sustained load to real Kafka (KAFKA_BOOTSTRAP_SERVERS).",
                x.topic,
                x.partition,
                x.batches,
                100 * x.fraction(wait),
                wall_batches(wait),
                wait,
            )
        if critical and self.on_critical is not None:
            self.on_critical()
        return self.last

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        for x in self.last:
            yield Observation(x.fraction(self.fetch_wait(x.topic)), {"topic": x.topic, "partition": x.partition})

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.interval_s):
                try:
                    self.check()
                except (ProbeFailed, OSError) as exc:
                    log.info("wall probe failed (broker away?): %s", exc)
        finally:
            self.sizes.close()
