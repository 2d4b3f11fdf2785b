"""What a step takes from outside its input: time, randomness, model responses.

A step reaches them only through its context (``ctx.now()``,
``ctx.random()``, ``await ctx.model(request)``), which asks a
:class:`Recorder`. Live, the recorder calls the clock, the random source or
the model client and notes each value in call order; the list is journaled
with the attempt's result. On replay it serves the noted values back in the
same order, so the step computes exactly what it computed the first time,
and a step whose code now asks for something else (another kind of value,
another model request, one call more) fails with :class:`NonDeterministicCall`
instead of silently getting a value meant for a different question.
"""

from __future__ import annotations

import dataclasses
import json
import random as _random
import time
from datetime import UTC, datetime
from typing import Any

from processors.engine.errors import NoModelClient, NonDeterministicCall
from processors.models import ModelClient, ModelRequest, ModelResponse

Call = dict[str, Any]
# Its own source: a library or test seeding the global `random` must not make draws repeat.
_RNG = _random.SystemRandom()


def request_data(request: ModelRequest) -> dict[str, Any]:
    """A model request as plain JSON data: what is recorded and compared on replay."""
    data = dataclasses.asdict(request)
    data["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    return data


class Recorder:
    """Records a step attempt's outside values (live) or serves recorded ones (replay).

    ``recorded`` is a previous attempt's list of calls: with it, and without
    ``live``, every call is served from it. ``calls`` is what this attempt
    used, in order, whichever way it was obtained.
    """

    def __init__(
        self,
        models: ModelClient | None = None,
        recorded: list[Call] | None = None,
        live: bool = False,
    ) -> None:
        self._models = models
        self._recorded = recorded
        self._live = live or recorded is None
        self.calls: list[Call] = []

    @property
    def replaying(self) -> bool:
        return not self._live

    def _next(self, kind: str) -> Call:
        assert self._recorded is not None
        n = len(self.calls)
        if n >= len(self._recorded):
            raise NonDeterministicCall(
                f"call #{n + 1} ({kind}) was not made when the attempt was recorded ({len(self._recorded)} call(s))"
            )
        entry = self._recorded[n]
        if entry.get("call") != kind:
            raise NonDeterministicCall(f"call #{n + 1} asks for {kind}, the recording has {entry.get('call')}")
        return entry

    def now(self) -> datetime:
        ms = int(self._next("now")["value"]) if self.replaying else int(time.time() * 1000)
        self.calls.append({"call": "now", "value": ms})
        return datetime.fromtimestamp(ms / 1000, UTC)

    def random(self) -> float:
        value = float(self._next("random")["value"]) if self.replaying else _RNG.random()
        self.calls.append({"call": "random", "value": value})
        return value

    async def model(self, request: ModelRequest) -> ModelResponse:
        asked = request_data(request)
        if self.replaying:
            entry = self._next("model")
            if entry.get("request") != asked:
                raise NonDeterministicCall(
                    f"model call #{len(self.calls) + 1} ({request.purpose}) sends another request than the recorded "
                    f"one: {_first_difference(entry.get('request'), asked)}"
                )
            response = ModelResponse.from_json(json.dumps(entry["response"]))
        else:
            if self._models is None:
                raise NoModelClient("this step called a model, but the worker has no model client")
            response = await self._models.complete(request)
        self.calls.append({"call": "model", "request": asked, "response": json.loads(response.to_json())})
        return response


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path or 'request'}: {str(old)[:120]!r} -> {str(new)[:120]!r}"
