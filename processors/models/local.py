"""LocalModel: a deterministic SIMULATION of a language model. No machine learning happens here.

It exists so that workflows, traces, budgets and benchmarks run offline and
reproducibly with realistic figures. A workload describes how its model calls
behave with a :class:`Simulation`: per purpose ("plan", "severity", ...), a
profile (latency and token counts) and an answer (purpose-shaped JSON derived
from the prompt). Purposes no simulation knows get the default profile and a
generic answer (the prompt's keywords).

What it returns is a function of (seed, purpose, model, prompt text) only:

- the text is the answer's JSON, padded with a deterministic "notes" field
  to the profile's output size;
- tokens in = the profile's ``context_tokens`` (standing for the system
  prompt and context a real deployment sends) + an estimate from the prompt
  text; tokens out = an estimate from the generated text;
- latency is the profile's, with a seeded jitter of +-5 %, slept with
  ``asyncio.sleep`` and divided by ``speed`` (``DURABLE_MODEL_SPEED``,
  default 1.0; tests use a large factor).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.models.client import (
    ModelConfigError,
    ModelRequest,
    ModelResponse,
    ModelTimeout,
    estimate_tokens,
)
from processors.models.prices import SIMULATED_MODEL, PriceTable

__all__ = ["DEFAULT_PROFILE", "SPEED_ENV", "Answer", "LocalModel", "PurposeProfile", "Simulation", "keywords"]

SPEED_ENV = "DURABLE_MODEL_SPEED"
_JITTER = 0.05


@dataclass(frozen=True, slots=True)
class PurposeProfile:
    """The simulated cost of one call for a purpose.

    ``prompt_tokens`` is the size of the prompt the profile assumes; with it,
    ``nominal_tokens`` is what a typical call bills. The actual bill follows
    the actual prompt and generated text.
    """

    latency_ms: float
    context_tokens: int
    prompt_tokens: int
    output_tokens: int

    @property
    def nominal_tokens_in(self) -> int:
        """Input tokens of a typical call."""
        return self.context_tokens + self.prompt_tokens

    @property
    def nominal_tokens(self) -> int:
        """Input plus output tokens of a typical call."""
        return self.nominal_tokens_in + self.output_tokens


DEFAULT_PROFILE = PurposeProfile(200.0, 80, 80, 60)

# An answer: (prompt text, seeded random source) -> the JSON body the simulated model returns.
Answer = Callable[[str, random.Random], dict[str, Any]]


@dataclass(frozen=True)
class Simulation:
    """How one workload's model calls are simulated: profiles and answers, by purpose."""

    profiles: Mapping[str, PurposeProfile] = field(default_factory=dict)
    answers: Mapping[str, Answer] = field(default_factory=dict)

    @staticmethod
    def merged(simulations: Iterable[Simulation | None]) -> Simulation:
        """One simulation from several (the first to name a purpose wins)."""
        profiles: dict[str, PurposeProfile] = {}
        answers: dict[str, Answer] = {}
        for sim in simulations:
            if sim is None:
                continue
            for purpose, profile in sim.profiles.items():
                profiles.setdefault(purpose, profile)
            for purpose, answer in sim.answers.items():
                answers.setdefault(purpose, answer)
        return Simulation(profiles, answers)


_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by for from has have i in is it its my of on or our that the their they this to was "
        "we were with you your me not no user system assistant",
    )
)
_NOTE_TEMPLATES = (
    "Considered {k}.",
    "Weighed {k} against the stated facts.",
    "Noted {k} in the report.",
    "The mention of {k} is consistent with the loss.",
    "Checked {k} for consistency.",
    "No conflict found around {k}.",
)


def _speed_from_env() -> float:
    raw = os.environ.get(SPEED_ENV, "1.0")
    try:
        return float(raw)
    except ValueError as exc:
        raise ModelConfigError(f"{SPEED_ENV} must be a number, not {raw!r}") from exc


class LocalModel:
    """The default ``ModelClient``: a seeded simulation (see the module docstring), never a real model."""

    def __init__(
        self,
        *,
        speed: float | None = None,
        model: str = SIMULATED_MODEL,
        simulation: Simulation | None = None,
        default_profile: PurposeProfile = DEFAULT_PROFILE,
        prices: PriceTable | None = None,
    ) -> None:
        self.speed = _speed_from_env() if speed is None else speed
        if not self.speed > 0:
            raise ModelConfigError(f"speed must be positive, not {self.speed}")
        self.model = model
        self.simulation = simulation or Simulation()
        self.default_profile = default_profile
        self._prices = prices if prices is not None else PriceTable.from_env()
        self._prices.price(model)  # fail at construction, not mid-run, when the model is unpriced

    def profile(self, purpose: str) -> PurposeProfile:
        """The profile used for ``purpose`` (the default one for purposes without their own)."""
        return self.simulation.profiles.get(purpose, self.default_profile)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Simulate the call: sleep the profile's latency / speed, then answer deterministically."""
        model = request.model or self.model
        profile = self.profile(request.purpose)
        prompt = request.prompt_text()
        digest = hashlib.sha256(f"{request.seed}|{request.purpose}|{model}|{prompt}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))

        simulated_ms = profile.latency_ms * (1.0 + rng.uniform(-_JITTER, _JITTER))
        wait_s = simulated_ms / 1000.0 / self.speed
        if wait_s > request.timeout_s:
            await asyncio.sleep(request.timeout_s)
            raise ModelTimeout(
                f"simulated {request.purpose} call takes {wait_s:.3f}s, over its {request.timeout_s}s timeout",
                model=model,
                purpose=request.purpose,
            )
        await asyncio.sleep(wait_s)

        target = min(profile.output_tokens, request.max_tokens)
        text = self._answer(request.purpose, prompt, rng, target_chars=target * 4)
        tokens_in = profile.context_tokens + estimate_tokens(prompt)
        tokens_out = estimate_tokens(text)
        return ModelResponse(
            text=text,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=self._prices.cost(model, tokens_in, tokens_out),
            latency_ms=round(wait_s * 1000.0, 3),
            raw={
                "simulated": True,
                "purpose": request.purpose,
                "seed": request.seed,
                "simulated_latency_ms": round(simulated_ms, 3),
                "speed": self.speed,
                "context_tokens": profile.context_tokens,
                "finish_reason": "stop",
            },
        )

    def _answer(self, purpose: str, prompt: str, rng: random.Random, *, target_chars: int) -> str:
        answer = self.simulation.answers.get(purpose)
        body = answer(prompt, rng) if answer is not None else {"purpose": purpose, "summary": keywords(prompt)[:5]}
        body["notes"] = ""
        room = target_chars - len(json.dumps(body))
        body["notes"] = _notes(keywords(prompt), rng, room)
        return json.dumps(body)


def keywords(text: str, limit: int = 8) -> list[str]:
    """The prompt's most frequent content words (ties alphabetically: deterministic whatever the dict order)."""
    words = [w for w in re.findall(r"[a-z][a-z_]{2,}", text.lower()) if w not in _STOPWORDS]
    return [w for w, _ in sorted(Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _notes(words: list[str], rng: random.Random, room: int) -> str:
    """Filler sentences from the prompt's own words, cut at a word boundary to fit ``room`` characters."""
    if room <= 0:
        return ""
    subjects = words or ["the report"]
    sentences: list[str] = []
    length = 0
    while length < room:
        sentence = rng.choice(_NOTE_TEMPLATES).format(k=subjects[len(sentences) % len(subjects)])
        sentences.append(sentence)
        length += len(sentence) + 1
    text = " ".join(sentences)
    return text if len(text) <= room else text[:room].rsplit(" ", 1)[0]
