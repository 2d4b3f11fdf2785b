"""Noticing a group consumer stuck rebalancing, from librdkafka's own statistics.

The embedded broker can wedge a consumer group: when the group's leader leaves
in the middle of a rebalance, every JoinGroup answer to the members left names
the departed leader, their SyncGroup fails with REBALANCE_IN_PROGRESS, and they
never get a partition (notes/broker-facts.md). Short fetch waits make the
window easier to hit, so the fast settings need a way out.

librdkafka reports the state of its group membership in its statistics
(``cgrp.state``: ``up`` once the coordinator is known and connected;
``cgrp.join_state``: ``steady`` once an assignment is in place, including an
empty one). A healthy rebalance leaves ``steady`` for a few seconds; a wedged
one never comes back. A member with the coordinator up whose join has not been
steady for :attr:`GroupWatch.stuck_after_s` (readings apart) is stuck: its worker re-creates its
consumers (:meth:`streams.worker.Worker.run_forever`), which joins the group as
a new member. Time without a coordinator (a broker outage) does not count:
that is :mod:`streams.brokerwatch`'s business.

A member that is steady with no partitions (more members than partitions) is
not stuck, and is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 1000
LEAVE_LIMIT_S = float(os.environ.get("DURABLE_LEAVE_LIMIT_S") or 10.0)  # the longest a leaving member waits for a rebalance to finish


class GroupWatch:
    """One group consumer's membership, as its statistics describe it."""

    def __init__(self, group: str, stuck_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.group = group
        self.stuck_after_s = stuck_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._unsteady_since: float | None = None
        self._unsteady_seen: float = 0.0  # the latest reading that found it unsteady
        self._read_at: float | None = None  # the latest reading, steady or not
        self._steady = False

    def now(self) -> float:
        """This watch's clock."""
        return self._clock()

    def consumer_config(self) -> dict[str, Any]:
        """What a consumer needs to report to this watch."""
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.on_stats}

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics callback (called from the consumer's poll)."""
        try:
            cgrp = json.loads(raw).get("cgrp")
        except ValueError:
            return
        if isinstance(cgrp, dict):
            self.observe(str(cgrp.get("state", "")), str(cgrp.get("join_state", "")))

    def observe(self, state: str, join_state: str) -> None:
        """Record one reading of the membership's ``state`` and ``join_state``."""
        now = self._clock()
        with self._lock:
            self._read_at, self._steady = now, state == "up" and join_state == "steady"
            if state != "up" or join_state == "steady":
                if self._unsteady_since is not None:
                    log.info(
                        "group %s: %s after %.1f s of rebalancing",
                        self.group,
                        join_state or state,
                        now - self._unsteady_since,
                    )
                self._unsteady_since = None  # healthy, or no coordinator (an outage, not a wedge)
                return
            if self._unsteady_since is None:
                log.info("group %s: rebalancing (join state %s)", self.group, join_state)
                self._unsteady_since = now
            self._unsteady_seen = now

    @property
    def stuck_for_s(self) -> float:
        """How long readings have found the member rebalancing with its coordinator up (0 when steady).

        Measured between readings, not up to now: statistics arrive only while the consumer polls, and a
        member busy in its assignment callback (a long take-over scan) is slow, not stuck.
        """
        with self._lock:
            since = self._unsteady_since
            return 0.0 if since is None else self._unsteady_seen - since

    def steady_since(self, moment: float) -> bool:
        """Whether the latest reading, taken at or after ``moment`` (this watch's clock), found the member steady."""
        with self._lock:
            return self._steady and self._read_at is not None and self._read_at >= moment

    @property
    def stuck(self) -> bool:
        """Whether the member has been rebalancing for longer than a healthy rebalance takes."""
        return self.stuck_for_s > self.stuck_after_s


def leave(consumer: Consumer, watch: GroupWatch, heartbeat_s: float, limit_s: float) -> None:
    """Close ``consumer``, first letting a rebalance in progress finish.

    A member that leaves while the group rebalances can wedge the embedded
    broker's group for good (see the module docstring); one that leaves a
    steady group hands its partitions over at once. A rebalance another member
    just started reaches this one with its next heartbeat, so the reading that
    counts is one taken a heartbeat and a statistics interval after we decided
    to leave. Partitions stay paused meanwhile: nothing the settling polls bring
    is processed, and, uncommitted, it is read again by the next owner. After
    ``limit_s`` it leaves anyway.
    """
    start = watch.now()
    settled_from = start + heartbeat_s + STATS_INTERVAL_MS / 1000
    while watch.now() - start < limit_s and not watch.steady_since(settled_from):
        consumer.pause(consumer.assignment())
        consumer.consume(100, 0.1)  # discarded: see above
    consumer.close()
