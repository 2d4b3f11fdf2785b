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
from streams.brokerwatch import EXIT_BROKER_LOST, BrokerLost, BrokerWatch
from streams.config import Settings
from streams.executor import Executor
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

    @property
    def ready(self) -> bool:
        """Whether every role of this worker has been given partitions (its groups have formed)."""
        return bool(self._parts) and all(part.assigned for part in self._parts)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        if self.telemetry is not None and not any(t.is_alive() for t in self._threads):
            self.telemetry.shutdown()  # exports the spans still queued
            self.telemetry = None

    @property
    def failed(self) -> BaseException | None:
        return self._errors[0] if self._errors else None

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; returns an exit code."""

        def on_signal(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self._exit_on_broker_loss = True  # this process is the worker: a lost broker ends it at once
        self.start()
        while not self.stop_event.wait(0.5):
            pass
        self.join(30)
        if any(isinstance(e, BrokerLost) for e in self._errors):
            return EXIT_BROKER_LOST
        return 1 if self.failed else 0
