"""OpenAICompatibleClient: a ``ModelClient`` for OpenAI-compatible chat-completions HTTP APIs.

Works with any server that speaks ``POST {base_url}/chat/completions`` (OpenAI,
vLLM, llama.cpp server, Ollama's OpenAI endpoint, ...). Configured from the
environment by ``from_env``:

- ``DURABLE_MODEL_BASE_URL``  required, e.g. ``https://api.openai.com/v1``
- ``DURABLE_MODEL_API_KEY``   optional (sent as ``Authorization: Bearer ...``)
- ``DURABLE_MODEL_NAME``      required, the model used when a request names none
- ``DURABLE_MODEL_TIMEOUT_S`` optional, default 30: a cap on every call's timeout

Errors map to the ``ModelError`` family: timeout -> ``ModelTimeout``; 429 ->
``ModelRateLimited`` (with ``Retry-After``); 5xx or no connection ->
``ModelUnavailable``; other 4xx -> ``ModelRejected``; a body without a
completion or usage -> ``ModelBadResponse``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from processors.models.client import (
    ModelBadResponse,
    ModelConfigError,
    ModelRateLimited,
    ModelRejected,
    ModelRequest,
    ModelResponse,
    ModelTimeout,
    ModelUnavailable,
)
from processors.models.prices import PriceTable, UnknownModelPrice

__all__ = ["OpenAICompatibleClient"]


class OpenAICompatibleClient:
    """Completes requests over HTTP; one connection pool per client (close it with ``aclose`` or ``async with``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        prices: PriceTable | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ModelConfigError("an OpenAI-compatible client needs a base URL")
        if not model:
            raise ModelConfigError("an OpenAI-compatible client needs a model name")
        if not timeout_s > 0:
            raise ModelConfigError(f"timeout_s must be positive, not {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._prices = prices if prices is not None else PriceTable.from_env()
        self._prices.price(model)  # an unpriced model fails here, before any paid call
        self._http = httpx.AsyncClient(transport=transport)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prices: PriceTable | None = None
    ) -> OpenAICompatibleClient:
        """A client configured by the ``DURABLE_MODEL_*`` variables (see the module docstring)."""
        env = os.environ if env is None else env
        base_url = env.get("DURABLE_MODEL_BASE_URL", "")
        model = env.get("DURABLE_MODEL_NAME", "")
        if not base_url or not model:
            raise ModelConfigError(
                "set DURABLE_MODEL_BASE_URL and DURABLE_MODEL_NAME to use an OpenAI-compatible model"
            )
        raw_timeout = env.get("DURABLE_MODEL_TIMEOUT_S", "30")
        try:
            timeout_s = float(raw_timeout)
        except ValueError as exc:
            raise ModelConfigError(f"DURABLE_MODEL_TIMEOUT_S must be a number, not {raw_timeout!r}") from exc
        return cls(
            base_url,
            model,
            api_key=env.get("DURABLE_MODEL_API_KEY") or None,
            timeout_s=timeout_s,
            prices=prices if prices is not None else PriceTable.from_env(env),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> OpenAICompatibleClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """POST the request; the timeout is the request's, capped by the client's."""
        model = request.model or self.model
        price = self._prices.price(model)  # before the call: never pay for an answer we cannot cost
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        timeout_s = min(request.timeout_s, self.timeout_s)

        started = time.perf_counter()
        try:
            # httpx's timeout bounds each phase (connect, each read); the outer
            # one bounds the whole call, so a server trickling bytes cannot overrun it.
            async with asyncio.timeout(timeout_s):
                reply = await self._http.post(
                    f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=timeout_s
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ModelTimeout(
                f"no answer from {self.base_url} within {timeout_s}s", model=model, purpose=request.purpose
            ) from exc
        except httpx.TransportError as exc:
            raise ModelUnavailable(
                f"cannot reach {self.base_url}: {exc!r}", model=model, purpose=request.purpose
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000.0

        status = reply.status_code
        if status == 429:
            retry_after = _retry_after_s(reply.headers.get("Retry-After"))
            raise ModelRateLimited(
                f"rate limited by {self.base_url} (retry after {retry_after}s)",
                retry_after_s=retry_after,
                model=model,
                purpose=request.purpose,
            )
        if status == 408:
            raise ModelTimeout(
                f"{self.base_url} timed out the request (HTTP 408)", model=model, purpose=request.purpose
            )
        if status >= 500:
            raise ModelUnavailable(
                f"{self.base_url} failed with HTTP {status}: {_snippet(reply.text)}",
                status=status,
                model=model,
                purpose=request.purpose,
            )
        if status >= 400:
            raise ModelRejected(
                f"{self.base_url} refused the request with HTTP {status}: {_snippet(reply.text)}",
                status=status,
                model=model,
                purpose=request.purpose,
            )
        if status != 200:
            raise ModelBadResponse(
                f"unexpected HTTP {status} from {self.base_url}", model=model, purpose=request.purpose
            )

        payload, text, tokens_in, tokens_out, answered_by = _parse(reply.content, model, request.purpose)
        try:
            cost = self._prices.price(answered_by).cost(tokens_in, tokens_out)
        except UnknownModelPrice:
            # A server may answer with a name of its own (an alias, a build id):
            # bill at the price of the model that was asked for.
            cost = price.cost(tokens_in, tokens_out)
        try:
            return ModelResponse(
                text=text,
                model=answered_by,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=cost,
                latency_ms=round(latency_ms, 3),
                raw=payload,
            )
        except ValueError as exc:  # e.g. NaN in the body: it could not be journaled and replayed
            raise ModelBadResponse(f"unrecordable body: {exc}", model=model, purpose=request.purpose) from exc


def _parse(content: bytes, model: str, purpose: str) -> tuple[dict[str, Any], str, int, int, str]:
    """(body, text, tokens in, tokens out, answering model) of a chat-completions body."""
    try:
        payload = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelBadResponse(
            f"body is not JSON: {_snippet(content.decode('utf-8', 'replace'))}", model=model, purpose=purpose
        ) from exc
    if not isinstance(payload, dict):
        raise ModelBadResponse("body is not a JSON object", model=model, purpose=purpose)
    try:
        text = payload["choices"][0]["message"]["content"]
        usage = payload["usage"]
        tokens_in, tokens_out = usage["prompt_tokens"], usage["completion_tokens"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelBadResponse(
            f"body lacks a completion or its usage: missing {exc}", model=model, purpose=purpose
        ) from exc
    if not isinstance(text, str):
        raise ModelBadResponse("the completion has no text content", model=model, purpose=purpose)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (tokens_in, tokens_out)):
        raise ModelBadResponse(f"usage counts are not non-negative integers: {usage!r}", model=model, purpose=purpose)
    answered_by = payload.get("model")
    return payload, text, tokens_in, tokens_out, answered_by if isinstance(answered_by, str) and answered_by else model


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _snippet(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
