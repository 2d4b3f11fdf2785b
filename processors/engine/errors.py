"""The errors a workflow's code meets, each with a type a user can catch or declare non-retryable."""

from __future__ import annotations


class StepFailure(Exception):
    """Raise from a step to fail this attempt with a clear type and message.

    ``retryable=False`` tells the engine not to spend further attempts.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NonDeterministicCall(Exception):
    """On replay, the step asked for a value the recording does not hold at this point."""

    retryable = False


class NoModelClient(Exception):
    """The step called a model, but this worker was given no model client."""

    retryable = False


class UnknownStep(Exception):
    """The command names a workflow, step or compensation this worker does not have."""


class InputRejected(ValueError):
    """An input that breaks the workflow's contract: ``reason`` says why, ``field`` where (None: the whole input)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
