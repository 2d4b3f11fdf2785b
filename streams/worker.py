"""A worker process: an orchestrator and a step executor, side by side.

Several workers may run; Kafka's group protocol spreads partitions between
them. A worker stops cleanly on SIGTERM or Ctrl-C (committing what it has
done) and loses nothing on SIGKILL.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from processors.engine.workflow import Workflow
from streams.config import Settings
from streams.executor import Executor
from streams.orchestrator import Orchestrator
from streams.telemetry import Telemetry

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
        return self

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
        self.start()
        while not self.stop_event.wait(0.5):
            pass
        self.join(30)
        return 1 if self.failed else 0
