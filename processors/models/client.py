"""The model-client contract: requests, responses, errors.

Every model call in a workflow goes through a ``ModelClient``. The request is
plain data (so it can be journaled with the step's inputs) and the response
round-trips through JSON exactly (so a recorded response can be served back
on replay instead of calling the model again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "Message",
    "ModelBadResponse",
    "ModelClient",
    "ModelConfigError",
    "ModelError",
    "ModelRateLimited",
    "ModelRejected",
    "ModelRequest",
    "ModelResponse",
    "ModelTimeout",
    "ModelUnavailable",
    "estimate_tokens",
]


def estimate_tokens(text: str) -> int:
    """Approximate token count of ``text``: one token per four characters, at least one.

    The common rule of thumb for English with BPE tokenisers; deterministic,
    so simulated budgets and costs are reproducible.
    """
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message: ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in {"system", "user", "assistant"}:
            raise ValueError(f"message role must be system, user or assistant, not {self.role!r}")


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """A chat completion request.

    ``purpose`` names what the call is for ("plan", "severity", "judge", ...):
    the local model shapes its answer and latency by it, and traces label
    spans with it. ``model`` empty means the client's configured model.
    ``timeout_s`` bounds the whole call, connection included.
    """

    purpose: str
    messages: tuple[Message, ...]
    model: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.purpose:
            raise ValueError("a model request needs a purpose")
        if not self.messages:
            raise ValueError("a model request needs at least one message")
        if not all(isinstance(m, Message) for m in self.messages):
            raise TypeError("messages must be Message instances")
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, not {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], not {self.temperature}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")

    @classmethod
    def of(cls, purpose: str, prompt: str, *, system: str | None = None, **options: Any) -> ModelRequest:
        """A request of one user message, after an optional system message."""
        messages = (Message("system", system),) if system else ()
        return cls(purpose=purpose, messages=(*messages, Message("user", prompt)), **options)

    def prompt_text(self) -> str:
        """The messages as one text (role-prefixed lines): what token estimates and seeds are taken from."""
        return "\n".join(f"{m.role}: {m.content}" for m in self.messages)


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A completion, with what it cost.

    ``raw`` is the provider's answer (or the simulation's details) as plain
    JSON data; ``to_json``/``from_json`` round-trip the whole response
    exactly, so a journaled response replays identically.
    """

    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    raw: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.tokens_in < 0 or self.tokens_out < 0:
            raise ValueError("token counts cannot be negative")
        if self.cost_usd < 0 or self.latency_ms < 0:
            raise ValueError("cost and latency cannot be negative")
        # Checked here, not at recording time, so a response that could not be
        # replayed identically (tuples, NaN, objects) is refused where it is made.
        try:
            same = json.loads(json.dumps(self.raw, allow_nan=False)) == self.raw
        except (TypeError, ValueError) as exc:
            raise ValueError(f"raw must be JSON data: {exc}") from exc
        if not same:
            raise ValueError("raw must be JSON data (lists, not tuples; string keys)")

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no NaN): what a journal records."""
        return json.dumps(
            {
                "text": self.text,
                "model": self.model,
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "cost_usd": self.cost_usd,
                "latency_ms": self.latency_ms,
                "raw": self.raw,
            },
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> ModelResponse:
        """The response ``to_json`` wrote; raises ``ValueError`` on anything else."""
        try:
            obj = json.loads(data)
            return cls(
                text=_typed(obj, "text", str),
                model=_typed(obj, "model", str),
                tokens_in=_typed(obj, "tokens_in", int),
                tokens_out=_typed(obj, "tokens_out", int),
                cost_usd=float(_typed(obj, "cost_usd", (int, float))),
                latency_ms=float(_typed(obj, "latency_ms", (int, float))),
                raw=_typed(obj, "raw", dict),
            )
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ValueError(f"not a recorded model response: {exc}") from exc


def _typed(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj[key]
    # bool is an int subclass; a recorded count is never a bool.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key} has type {type(value).__name__}")
    return value


class ModelError(Exception):
    """A model call failed. ``retryable`` tells a retry policy whether trying again can help."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, model: str = "", purpose: str = "") -> None:
        super().__init__(message)
        self.model = model
        self.purpose = purpose


class ModelTimeout(ModelError):
    """The call did not finish within the request's timeout."""

    retryable = True


class ModelRateLimited(ModelError):
    """The provider refused the call for rate (HTTP 429); ``retry_after_s`` is its hint, if it gave one."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, model: str = "", purpose: str = "") -> None:
        super().__init__(message, model=model, purpose=purpose)
        self.retry_after_s = retry_after_s


class ModelUnavailable(ModelError):
    """The provider failed (HTTP 5xx) or could not be reached; ``status`` is None for a connection failure."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, model: str = "", purpose: str = "") -> None:
        super().__init__(message, model=model, purpose=purpose)
        self.status = status


class ModelBadResponse(ModelError):
    """The provider answered, but not with a usable completion (malformed body, no text, no usage).

    Not retryable: the same request is likely to get the same answer.
    """


class ModelRejected(ModelError):
    """The provider refused the request itself (HTTP 4xx other than 429: bad request, auth, unknown model)."""

    def __init__(self, message: str, *, status: int, model: str = "", purpose: str = "") -> None:
        super().__init__(message, model=model, purpose=purpose)
        self.status = status


class ModelConfigError(ModelError):
    """The client is misconfigured (missing base URL, unpriced model, bad environment value)."""


@runtime_checkable
class ModelClient(Protocol):
    """Anything that completes a ``ModelRequest``; raises ``ModelError`` subclasses on failure."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Complete ``request``."""
        ...
