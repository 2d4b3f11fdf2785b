"""A worker process: an orchestrator and a step executor, side by side.

Several workers may run; Kafka's group protocol spreads partitions between
them. A worker stops cleanly on SIGTERM or Ctrl-C (committing what it has
done) and loses nothing on SIGKILL.

A worker also watches its broker (:mod:`streams.brokerwatch`): through an
outage it waits and resumes; if the broker comes back without the log its
state was built from (restarted empty, topics re-created), it stops and
:meth:`Worker.run_forever` returns ``EXIT_BROKER_LOST`` (75), so that it is
restarted against the new log with its old local state discarded.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from processors.engine.workflow import Workflow
from streams import offsets, wall
from streams.brokerwatch import EXIT_BROKER_LOST, BrokerLost, BrokerWatch
from streams.config import Settings
from streams.executor import Executor
from streams.kafka import DEFAULT_FETCH_WAIT_MS, LOW_LATENCY_FETCH_WAIT_MS
from streams.orchestrator import Orchestrator
from streams.telemetry import Telemetry
from streams.topics import Topics

log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a worker runs."""

    ALL = "all"
    ORCHESTRATOR = "orchestrator"
    EXECUTOR = "executor"


@dataclass
class Worker:
    """Runs the chosen roles in threads until :meth:`stop`."""

    settings: Settings
    workflows: list[Workflow]
    role: Role = Role.ALL
    stop_event: threading.Event = field(default_factory=threading.Event)
    telemetry: Telemetry | None = None
    wall_watch: wall.WallWatch | None = None
    # Why run_forever should start this worker's consumers anew (the wall watch wants longer fetch waits,
    # or a group watch found its member stuck rebalancing); None while all is well.
    restart_for: str | None = None
    _stuck_groups: set[str] = field(default_factory=set)
    watch_interval_s: float = 1.0
    _exit_on_broker_loss: bool = False
    _parts: list[Orchestrator | Executor] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _errors: list[BaseException] = field(default_factory=list)

    def start(self) -> Worker:
        self.telemetry = self.telemetry or Telemetry(self.settings)
        parts: list[Orchestrator | Executor] = []
        if self.role in (Role.ALL, Role.ORCHESTRATOR):
            parts.append(Orchestrator(self.settings, self.workflows, self.stop_event, self.telemetry))
        if self.role in (Role.ALL, Role.EXECUTOR):
            parts.append(Executor(self.settings, self.workflows, self.stop_event, self.telemetry))
        self._parts = parts
        if wall.is_embedded(self.settings):
            # The waits our group consumers get (streams.wall.fetch_wait_ms caches what it chose for them).
            waits: dict[str, float] = {}
            for part in parts:
                wait = (
                    wall.fetch_wait_ms(self.settings, LOW_LATENCY_FETCH_WAIT_MS, part.reads)
                    if self.settings.low_latency
                    else DEFAULT_FETCH_WAIT_MS
                )
                waits.update(dict.fromkeys(part.reads, wait))
            self.wall_watch = wall.WallWatch(
                self.settings,
                lambda topic: waits.get(topic, DEFAULT_FETCH_WAIT_MS),
                self.stop_event,
                reads=set(waits),
                interval_s=self.settings.wall_probe_s,
                meter=self.telemetry.meter,
                on_critical=self._wall_critical if self.settings.low_latency else None,
            ).start()
        for part in parts:
            thread = threading.Thread(target=self._guard, args=(part,), name=type(part).__name__, daemon=True)
            thread.start()
            self._threads.append(thread)
        topics = Topics(self.settings.namespace)
        watched = (topics.commands, topics.run_changelog) if self.role != Role.EXECUTOR else (topics.commands,)
        watch = BrokerWatch(self.settings, watched, self.watch_interval_s)
        thread = threading.Thread(target=self._watch, args=(watch,), name="BrokerWatch", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _watch(self, watch: BrokerWatch) -> None:
        try:
            reason = watch.run(self.stop_event)
        except Exception:  # the watch failing is no reason to stop the work it watches: say so, carry on
            log.exception("the broker watch stopped; a broker restart will not be noticed")
            return
        if reason is not None:
            log.critical(
                "BROKER LOST ITS LOG: %s. This worker's local state was built from the old log and must not be "
                "mixed with the new one: stopping (exit %d); restarted, it discards that state and starts from "
                "the broker as it now is. Runs in flight on the old broker are gone with it.",
                reason,
                EXIT_BROKER_LOST,
            )
            self._errors.append(BrokerLost(reason))
            if self._exit_on_broker_loss:
                # Now, without the clean stop: that would commit the old log's offsets, checkpoint and spans
                # into the new broker's groups and topics. Nothing of the old state may reach the new log.
                logging.shutdown()
                os._exit(EXIT_BROKER_LOST)
            self.stop_event.set()

    def _guard(self, part: Orchestrator | Executor) -> None:
        try:
            part.run()
        except BaseException as exc:  # a dead loop must stop the whole worker, loudly
            log.exception("%s stopped with an error", type(part).__name__)
            self._errors.append(exc)
            self.stop_event.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _wall_critical(self) -> None:
        # Only new consumers get a longer fetch wait: stop these cleanly; run_forever starts new ones.
        self._restart("embedded broker wall: restarting this worker's consumers with a longer fetch wait")
        wall.forget(self.settings)

    def _restart(self, reason: str) -> None:
        if self.restart_for is None:
            self.restart_for = reason
            self.stop_event.set()

    def _check_groups(self) -> None:
        for part in self._parts:
            watch = part.group_watch
            if watch.stuck:
                self._stuck_groups.add(watch.group)
                self._restart(
                    f"group {watch.group} has been rebalancing for {watch.stuck_for_s:.0f} s with its coordinator"
                    " up (the broker's wedged-group bug, notes/broker-facts.md): re-creating the group and this worker's"
                    " consumers"
                )
                return

    def _recreate_stuck_groups(self) -> None:
        # Only the embedded broker wedges groups; on Kafka a stuck member is reported and re-created, no more.
        stuck, self._stuck_groups = self._stuck_groups, set()
        if not wall.is_embedded(self.settings):
            return
        for group in sorted(stuck):
            try:
                kept = offsets.recreate_group(self.settings, group)
            except Exception:  # the new consumers join anyway; a wedge that persists is reported again
                log.exception("could not re-create group %s", group)
                continue
            log.warning("group %s deleted and re-created with its %d committed offsets", group, kept)

    @property
    def ready(self) -> bool:
        """Whether every role of this worker has been given partitions (its groups have formed)."""
        return bool(self._parts) and all(part.assigned for part in self._parts)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        if self.wall_watch is not None:
            self.wall_watch.join(timeout)
        if self.telemetry is not None and not any(t.is_alive() for t in self._threads):
            self.telemetry.shutdown()  # exports the spans still queued
            self.telemetry = None

    @property
    def failed(self) -> BaseException | None:
        return self._errors[0] if self._errors else None

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; returns an exit code.

        The roles are stopped cleanly (offsets committed) and started again
        with new consumers when the wall watch finds a partition at the
        critical fraction of its consumers' fetch wait (the new ones get a wait
        that fits), or when a group watch finds a member stuck rebalancing
        (the new ones join as new members).
        """
        signalled = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            signalled.set()
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self._exit_on_broker_loss = True  # this process is the worker: a lost broker ends it at once
        while True:
            self.start()
            while not self.stop_event.wait(0.5):
                self._check_groups()
            self.join(30)
            if any(isinstance(e, BrokerLost) for e in self._errors):
                return EXIT_BROKER_LOST
            if self.failed or self.restart_for is None or signalled.is_set():
                return 1 if self.failed else 0
            log.warning("%s", self.restart_for)
            self._recreate_stuck_groups()
            self.stop_event.clear()
            self.restart_for = None
            self._parts, self._threads = [], []
