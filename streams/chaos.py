"""Crash points for kill tests: ``DURABLE_CRASH_AT=point:n`` SIGKILLs this process
the n-th time execution reaches ``point``; ``DURABLE_PAUSE_AT=point:n`` SIGSTOPs it there
instead (a zombie: the test sends SIGCONT once another worker has taken its partitions).
Unset (always, outside tests), they cost a string comparison.

Points: ``orchestrator.before_outputs`` (inputs applied in memory, nothing written),
``orchestrator.after_outputs`` (commands/journal/outputs acknowledged, changelog not),
``orchestrator.after_changelog`` (state acknowledged, local RocksDB not written),
``orchestrator.before_commit`` (local state written, input offsets not committed),
``orchestrator.after_timer_outputs`` (a batch that fired due retries wrote their commands, not their state),
``executor.during_step`` (a step handler is running).
"""

from __future__ import annotations

import os
import signal
import threading


def _parse(variable: str) -> tuple[str, int]:
    name, _, count = os.environ.get(variable, "").partition(":")
    return name, int(count or 1) if name else 0


_crash, _crash_left = _parse("DURABLE_CRASH_AT")
_pause, _pause_left = _parse("DURABLE_PAUSE_AT")
_continued = threading.Event()
if _pause and threading.current_thread() is threading.main_thread():
    # SIGSTOP stops the other threads at once but may let this one run on a little: it waits for the SIGCONT.
    signal.signal(signal.SIGCONT, lambda _signum, _frame: _continued.set())


def point(name: str) -> None:
    """Die (SIGKILL, no clean-up) or stop (SIGSTOP) here if this is a configured point's n-th visit."""
    global _crash_left, _pause_left
    if _crash == name:
        _crash_left -= 1
        if _crash_left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    if _pause == name:
        _pause_left -= 1
        if _pause_left == 0:
            _continued.clear()
            os.kill(os.getpid(), signal.SIGSTOP)
            _continued.wait()
