"""Noticing a broker that went away and came back without the log a worker was built from.

A worker's local state (the RocksDB run table, admission, timers) is a cache
of its namespace's topics. If the broker comes back empty (the embedded
broker keeps everything in memory: a restart loses every topic) or its topics
were re-created, that state describes runs the new log has never heard of,
and continuing would mix the two. What Kafka gives us to tell, checked every
``interval_s`` by :class:`BrokerWatch`:

- each watched topic's **id**, a UUID the broker gives a topic when it is
  created: a re-created topic, or a restarted in-memory broker, has a new one
  (Tansu's cluster id is the constant ``tansu_cluster``, so the topic id is
  what changes there);
- the **cluster id** (a different Kafka cluster behind the same address);
- a watched topic that **no longer exists**;
- **end offsets that went backwards** on a partition (a log truncated under
  us, with the same topic id).

A broker that does not answer is an outage, not a loss: the watch waits
(librdkafka reconnects by itself), logs when the outage began and when the
broker is back, and compares again then: the same broker with its log
intact changes nothing, and the worker resumes where it was.

On a loss the worker logs it at CRITICAL and exits with
:data:`EXIT_BROKER_LOST` (75, ``EX_TEMPFAIL``) rather than rebuilding in
place: a supervisor (systemd, compose ``restart: on-failure``, Kubernetes)
restarts it, and the restarted worker binds its run table to the new
changelog, which empties the old local state (``RunTable.bind``) before
anything is read or written. Exiting keeps one code path for "start from a
log", the one every worker start already takes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.config import Settings
from streams.kafka import admin, reader

log = logging.getLogger(__name__)

EXIT_BROKER_LOST = 75  # EX_TEMPFAIL: restart me (against the broker as it now is)
CHECK_TIMEOUT_S = 5.0


class BrokerLost(RuntimeError):
    """The broker came back without the log this worker's state was built from."""


@dataclass(frozen=True)
class Observation:
    """What the broker said about the watched topics at one moment."""

    cluster_id: str | None
    topic_ids: dict[str, str]
    end_offsets: dict[tuple[str, int], int]


class Unreachable(Exception):
    """The broker did not answer in time (an outage, not a verdict)."""


@dataclass
class BrokerWatch:
    """Compares the broker, every ``interval_s``, with what it was when the watched topics were first seen."""

    settings: Settings
    topics: tuple[str, ...]
    interval_s: float = 1.0
    _admin: AdminClient | None = field(default=None, init=False, repr=False)
    _reader: Consumer | None = field(default=None, init=False, repr=False)
    baseline: Observation | None = field(default=None, init=False)
    _seen_ends: dict[tuple[str, int], int] = field(default_factory=dict, init=False, repr=False)

    def observe(self) -> Observation:
        """Ask the broker now; :class:`Unreachable` if it does not answer."""
        if self._admin is None:
            self._admin = admin(self.settings, log_level=0)
        try:
            # All topics, never one by name: naming a topic in a metadata request auto-creates it here.
            metadata = self._admin.list_topics(timeout=CHECK_TIMEOUT_S)
        except Exception as exc:
            raise Unreachable(str(exc)) from None
        present = [t for t in self.topics if t in metadata.topics and metadata.topics[t].error is None]
        topic_ids: dict[str, str] = {}
        if present:
            futures = self._admin.describe_topics(TopicCollection(present), request_timeout=CHECK_TIMEOUT_S)
            try:
                for name, future in futures.items():
                    topic_ids[name] = str(future.result(timeout=CHECK_TIMEOUT_S).topic_id)
            except Exception as exc:
                raise Unreachable(str(exc)) from None
        ends: dict[tuple[str, int], int] = {}
        if self._reader is None:
            self._reader = reader(self.settings, log_level=0)
        for name in present:
            for p in metadata.topics[name].partitions:
                try:
                    _, high = self._reader.get_watermark_offsets(TopicPartition(name, p), timeout=CHECK_TIMEOUT_S)
                except Exception as exc:
                    raise Unreachable(str(exc)) from None
                ends[(name, p)] = high
        return Observation(metadata.cluster_id, topic_ids, ends)

    def lost(self, now: Observation) -> str | None:
        """Why ``now`` shows the broker lost the watched log (None: it did not), against the baseline."""
        if self.baseline is None:
            return None
        before = self.baseline
        if before.cluster_id is not None and now.cluster_id != before.cluster_id:
            return f"cluster id changed from {before.cluster_id} to {now.cluster_id}"
        for name, topic_id in before.topic_ids.items():
            if name not in now.topic_ids:
                return f"topic {name} no longer exists"
            if now.topic_ids[name] != topic_id:
                return f"topic {name} was re-created (id {topic_id} is now {now.topic_ids[name]})"
        for key, high in now.end_offsets.items():
            if high < self._seen_ends.get(key, 0):
                return f"{key[0]}[{key[1]}] ends at offset {high}, it had reached {self._seen_ends[key]}"
        return None

    def check(self) -> str | None:
        """Observe once: the reason the log was lost, or None (same log, not seen yet, or unreachable)."""
        now = self.observe()
        if self.baseline is None:
            if set(now.topic_ids) == set(self.topics):
                self.baseline = now
                log.info("watching the broker: cluster %s, topics %s", now.cluster_id, now.topic_ids)
        else:
            reason = self.lost(now)
            if reason is not None:
                return reason
        for key, high in now.end_offsets.items():
            self._seen_ends[key] = max(high, self._seen_ends.get(key, 0))
        return None

    def run(self, stop: threading.Event) -> str | None:
        """Watch until ``stop`` is set (None) or the log is lost (the reason)."""
        down_since: float | None = None
        try:
            while not stop.wait(self.interval_s):
                try:
                    reason = self.check()
                except Unreachable as exc:
                    if down_since is None:
                        down_since = time.monotonic()
                        log.warning("broker %s does not answer (%s): waiting", self.settings.bootstrap_servers, exc)
                    continue
                if down_since is not None:
                    log.warning(
                        "broker %s answers again after %.1f s", self.settings.bootstrap_servers, time.monotonic() - down_since
                    )
                    down_since = None
                if reason is not None:
                    return reason
            return None
        finally:
            self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._admin = None
