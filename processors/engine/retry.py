"""Retry policies: how often and how patiently a step (or its compensation) is retried."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a step (or its compensation) is retried.

    Attempt ``n`` of a budget (1-based) that fails is followed, after
    ``initial_backoff_s * multiplier ** (n - 1)`` seconds capped at
    ``max_backoff_s``, by attempt ``n + 1``, up to ``max_attempts``. ``jitter``
    spreads each delay by up to that fraction either way, from a hash of the
    run id, step and attempt: the same run always waits the same delays, so a
    replay is exact. Errors whose type (or a base class) is named in
    ``non_retryable`` end the budget at once, as does ``StepFailure(retryable=False)``.

    ``on_exhausted`` says what a run does when a step's budget ends: ``"compensate"``
    (undo the completed steps, newest first) or ``"pause"`` (dead letter written,
    nothing undone, run PAUSED until ``durable dlq redrive`` resumes it or
    ``durable runs compensate`` undoes it on an operator's word). A compensation's
    own policy always ends in a dead letter.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException] | str, ...] = ()
    on_exhausted: Literal["compensate", "pause"] = "compensate"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        if self.on_exhausted not in ("compensate", "pause"):
            raise ValueError("on_exhausted is 'compensate' or 'pause'")

    def backoff_ms(self, run_id: str, step: str, attempt: int, nth: int) -> int:
        """Delay after the ``nth`` failed attempt of this budget (``attempt`` is its global number)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (nth - 1))
        digest = hashlib.sha256(f"{run_id}/{step}/{attempt}".encode()).digest()
        spread = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # uniform in [-1, 1)
        return max(0, round(base * (1 + self.jitter * spread) * 1000))

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` may be retried (budget permitting).

        Besides ``non_retryable``, an error that says ``retryable = False`` of
        itself (``StepFailure(retryable=False)``, a rejected model request) is not.
        """
        if getattr(exc, "retryable", True) is False:
            return False
        names = {cls.__name__ for cls in type(exc).__mro__} | {
            f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__
        }
        for kind in self.non_retryable:
            if isinstance(kind, str) and kind in names:
                return False
            if isinstance(kind, type) and isinstance(exc, kind):
                return False
        return True
