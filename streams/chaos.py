"""Crash points for kill tests: ``DURABLE_CRASH_AT=point:n`` SIGKILLs this process
the n-th time execution reaches ``point``. Unset (always, outside tests), it costs a dict lookup.

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

_spec = os.environ.get("DURABLE_CRASH_AT", "")
_point, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _point else 0


def point(name: str) -> None:
    """Die here (SIGKILL, no clean-up) if this is the configured crash point's n-th visit."""
    global _remaining
    if _point != name:
        return
    _remaining -= 1
    if _remaining == 0:
        os.kill(os.getpid(), signal.SIGKILL)
