"""LocalModel: a deterministic SIMULATION of a language model. No machine learning happens here.

It exists so that workflows, traces, budgets and benchmarks run offline and
reproducibly with realistic figures. For each purpose ("plan", "severity",
"judge", ...) a profile gives a latency and token counts near the flagship
FNOL run (plan ~80 ms and 192 tokens; a whole run of plan, policy retrieval,
vision, fraud, severity and evaluator judge ~2.8 s, 2,210 tokens, $0.018).

What it returns is a function of (seed, purpose, model, prompt text) only:

- the text is purpose-shaped JSON derived from the prompt (a severity read
  from the amounts and damage words in it, a judge verdict that fails on
  the failure words in it, ...), padded with a deterministic "notes" field
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
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from processors.models.client import (
    ModelConfigError,
    ModelRequest,
    ModelResponse,
    ModelTimeout,
    estimate_tokens,
)
from processors.models.prices import SIMULATED_MODEL, PriceTable

__all__ = ["DEFAULT_PROFILE", "FNOL_PROFILES", "SPEED_ENV", "LocalModel", "PurposeProfile"]

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


# The flagship run's six model-backed steps; they sum to 2,800 ms and 2,210
# tokens, and at the simulated model's price (5 / 15 USD per M) to $0.0180.
FNOL_PROFILES: Mapping[str, PurposeProfile] = MappingProxyType(
    {
        "plan": PurposeProfile(80.0, 100, 52, 40),
        "retrieval": PurposeProfile(420.0, 180, 120, 80),
        "vision": PurposeProfile(1100.0, 300, 120, 190),
        "fraud": PurposeProfile(310.0, 90, 80, 70),
        "severity": PurposeProfile(640.0, 160, 140, 220),
        "judge": PurposeProfile(250.0, 100, 70, 98),
    }
)
DEFAULT_PROFILE = PurposeProfile(200.0, 80, 80, 60)

_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by for from has have i in is it its my of on or our that the their they this to was "
        "we were with you your me not no user system assistant",
    )
)
_SEVERE = ("airbag_deployed", "frame_damage", "total_loss", "structural_damage", "burnt_out", "flooded_room")
_MODERATE = ("front_bumper_dent", "rear_bumper_dent", "door_dent", "water_stain", "smoke_damage", "broken_window")
_LOSS_TYPES = (
    "auto_collision",
    "auto_theft",
    "auto_glass",
    "property_water",
    "property_fire",
    "property_theft",
    "liability",
)
# Words that make the simulated judge doubt a decision, and by how much.
_JUDGE_DOUBTS = {
    "not in force": 0.4,
    "not covered": 0.3,
    "exceeds": 0.3,
    "missing": 0.25,
    "over budget": 0.3,
    "no citation": 0.3,
    "unsupported": 0.25,
    "contradict": 0.3,
}
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
        profiles: Mapping[str, PurposeProfile] = FNOL_PROFILES,
        default_profile: PurposeProfile = DEFAULT_PROFILE,
        prices: PriceTable | None = None,
    ) -> None:
        self.speed = _speed_from_env() if speed is None else speed
        if not self.speed > 0:
            raise ModelConfigError(f"speed must be positive, not {self.speed}")
        self.model = model
        self.profiles = profiles
        self.default_profile = default_profile
        self._prices = prices if prices is not None else PriceTable.from_env()
        self._prices.price(model)  # fail at construction, not mid-run, when the model is unpriced

    def profile(self, purpose: str) -> PurposeProfile:
        """The profile used for ``purpose`` (the default one for purposes without their own)."""
        return self.profiles.get(purpose, self.default_profile)

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
        text = _answer(request.purpose, prompt, rng, target_chars=target * 4)
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


def _keywords(text: str, limit: int = 8) -> list[str]:
    words = [w for w in re.findall(r"[a-z][a-z_]{2,}", text.lower()) if w not in _STOPWORDS]
    # Most frequent first, ties alphabetically: deterministic whatever the dict order.
    return [w for w, _ in sorted(Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _amounts(text: str) -> list[float]:
    # Decimals, currency amounts and "amount: N"; not bare integers, which in a
    # claim are mostly years, phone numbers and identifiers.
    pattern = r"(?:[£$]\s?|amount\"?\s*[:=]\s*)(\d[\d,]*(?:\.\d+)?)|(?<![\w.-])(\d+\.\d+)(?![\w-])"
    return [float((a or b).replace(",", "")) for a, b in re.findall(pattern, text, flags=re.IGNORECASE)]


def _loss_type(text: str) -> str | None:
    lowered = text.lower()
    return next((lt for lt in _LOSS_TYPES if lt in lowered), None)


def _line(loss_type: str | None, text: str) -> str:
    if loss_type:
        return loss_type.split("_")[0] if loss_type != "liability" else "liability"
    lowered = text.lower()
    if any(w in lowered for w in ("car", "vehicle", "windscreen")):
        return "auto"
    return "property" if any(w in lowered for w in ("house", "home", "kitchen", "pipe")) else "liability"


def _answer(purpose: str, prompt: str, rng: random.Random, *, target_chars: int) -> str:
    lowered = prompt.lower()
    keywords = _keywords(prompt)
    loss_type = _loss_type(prompt)
    severe = [label for label in _SEVERE if label in lowered]
    moderate = [label for label in _MODERATE if label in lowered]
    amounts = _amounts(prompt)
    body: dict[str, Any]
    if purpose == "plan":
        body = {
            "line": _line(loss_type, prompt),
            "loss_type": loss_type or "unknown",
            "checks": ["policy_check", "damage_assessment", "fraud_check"],
        }
    elif purpose == "retrieval":
        body = {
            "query": " ".join([*(loss_type or "").split("_"), "cover", "excess", "limit"]).strip(),
            "terms": keywords[:6],
        }
    elif purpose == "vision":
        score = min(1.0, 0.15 + 0.35 * len(severe) + 0.1 * len(moderate) + rng.uniform(0.0, 0.05))
        body = {"labels": severe + moderate, "damage_score": round(score, 2)}
    elif purpose == "fraud":
        signals = [
            s
            for s, present in (
                ("high_amount", any(a > 20_000 for a in amounts)),
                ("theft", "theft" in lowered or "stolen" in lowered),
                ("late_notification", "late" in lowered),
            )
            if present
        ]
        body = {"signals": signals, "risk": round(min(1.0, 0.2 * len(signals) + rng.uniform(0.0, 0.1)), 2)}
    elif purpose == "severity":
        amount = max(amounts, default=0.0)
        level = (
            "HIGH"
            if (severe and amount > 10_000) or amount > 40_000
            else "MEDIUM"
            if amount > 3_000 or severe
            else "LOW"
        )
        body = {"severity": level, "rationale": f"amount {amount:.2f}; severe damage: {', '.join(severe) or 'none'}"}
    elif purpose == "judge":
        doubts = [word for word in _JUDGE_DOUBTS if word in lowered]
        score = max(0.0, round(0.9 + rng.uniform(0.0, 0.08) - sum(_JUDGE_DOUBTS[w] for w in doubts), 2))
        body = {
            "pass": score >= 0.7,
            "score": score,
            "reasons": [f"prompt says '{w}'" for w in doubts] or ["decision consistent with the evidence given"],
        }
    else:
        body = {"purpose": purpose, "summary": keywords[:5]}
    body["notes"] = ""
    room = target_chars - len(json.dumps(body))
    body["notes"] = _notes(keywords, rng, room)
    return json.dumps(body)


def _notes(keywords: list[str], rng: random.Random, room: int) -> str:
    """Filler sentences from the prompt's own words, cut at a word boundary to fit ``room`` characters."""
    if room <= 0:
        return ""
    subjects = keywords or ["the report"]
    sentences: list[str] = []
    length = 0
    while length < room:
        sentence = rng.choice(_NOTE_TEMPLATES).format(k=subjects[len(sentences) % len(subjects)])
        sentences.append(sentence)
        length += len(sentence) + 1
    text = " ".join(sentences)
    return text if len(text) <= room else text[:room].rsplit(" ", 1)[0]
