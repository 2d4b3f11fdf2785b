"""How the FNOL agent's model calls are simulated when no real model is configured.

The six model-backed purposes of the flagship run, with latency and token
profiles near the seed's (plan ~80 ms and 192 tokens; the whole run ~2.8 s,
2,210 tokens, $0.018), and answers shaped like what each tool asks for: a
plan from the loss type, damage labels and a score from the photo
descriptors, fraud signals, a severity read from amounts and damage words, a
judge verdict that fails on the doubt words in its prompt. Deterministic for
the same prompt and seed (see :mod:`processors.models.local`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from processors.models import PurposeProfile, Simulation, keywords
from schemas.fnol.models import LOSS_TYPES

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


_SEVERE = ("airbag_deployed", "frame_damage", "total_loss", "structural_damage", "burnt_out", "flooded_room")
_MODERATE = ("front_bumper_dent", "rear_bumper_dent", "door_dent", "water_stain", "smoke_damage", "broken_window")
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


def _amounts(text: str) -> list[float]:
    # Decimals, currency amounts and "amount: N"; not bare integers, which in a
    # claim are mostly years, phone numbers and identifiers.
    pattern = r"(?:[£$]\s?|amount\"?\s*[:=]\s*)(\d[\d,]*(?:\.\d+)?)|(?<![\w.-])(\d+\.\d+)(?![\w-])"
    return [float((a or b).replace(",", "")) for a, b in re.findall(pattern, text, flags=re.IGNORECASE)]


def _loss_type(text: str) -> str | None:
    lowered = text.lower()
    return next((lt for lt in LOSS_TYPES if lt in lowered), None)


def _line(loss_type: str | None, text: str) -> str:
    if loss_type:
        return loss_type.split("_")[0] if loss_type != "liability" else "liability"
    lowered = text.lower()
    if any(w in lowered for w in ("car", "vehicle", "windscreen")):
        return "auto"
    return "property" if any(w in lowered for w in ("house", "home", "kitchen", "pipe")) else "liability"


def _plan(prompt: str, rng: random.Random) -> dict[str, Any]:
    loss_type = _loss_type(prompt)
    return {
        "line": _line(loss_type, prompt),
        "loss_type": loss_type or "unknown",
        "checks": ["policy_check", "damage_assessment", "fraud_check"],
    }


def _retrieval(prompt: str, rng: random.Random) -> dict[str, Any]:
    loss_type = _loss_type(prompt)
    return {
        "query": " ".join([*(loss_type or "").split("_"), "cover", "excess", "limit"]).strip(),
        "terms": keywords(prompt)[:6],
    }


def _damage(prompt: str) -> tuple[list[str], list[str]]:
    lowered = prompt.lower()
    return [label for label in _SEVERE if label in lowered], [label for label in _MODERATE if label in lowered]


def _vision(prompt: str, rng: random.Random) -> dict[str, Any]:
    severe, moderate = _damage(prompt)
    score = min(1.0, 0.15 + 0.35 * len(severe) + 0.1 * len(moderate) + rng.uniform(0.0, 0.05))
    return {"labels": severe + moderate, "damage_score": round(score, 2)}


def _fraud(prompt: str, rng: random.Random) -> dict[str, Any]:
    lowered, amounts = prompt.lower(), _amounts(prompt)
    signals = [
        s
        for s, present in (
            ("high_amount", any(a > 20_000 for a in amounts)),
            ("theft", "theft" in lowered or "stolen" in lowered),
            ("late_notification", "late" in lowered),
        )
        if present
    ]
    return {"signals": signals, "risk": round(min(1.0, 0.2 * len(signals) + rng.uniform(0.0, 0.1)), 2)}


def _severity(prompt: str, rng: random.Random) -> dict[str, Any]:
    severe, _ = _damage(prompt)
    amount = max(_amounts(prompt), default=0.0)
    level = (
        "HIGH"
        if (severe and amount > 10_000) or amount > 40_000
        else "MEDIUM"
        if amount > 3_000 or severe
        else "LOW"
    )
    return {"severity": level, "rationale": f"amount {amount:.2f}; severe damage: {', '.join(severe) or 'none'}"}


def _judge(prompt: str, rng: random.Random) -> dict[str, Any]:
    lowered = prompt.lower()
    doubts = [word for word in _JUDGE_DOUBTS if word in lowered]
    score = max(0.0, round(0.9 + rng.uniform(0.0, 0.08) - sum(_JUDGE_DOUBTS[w] for w in doubts), 2))
    return {
        "pass": score >= 0.7,
        "score": score,
        "reasons": [f"prompt says '{w}'" for w in doubts] or ["decision consistent with the evidence given"],
    }


FNOL_SIMULATION = Simulation(
    profiles=FNOL_PROFILES,
    answers={
        "plan": _plan,
        "retrieval": _retrieval,
        "vision": _vision,
        "fraud": _fraud,
        "severity": _severity,
        "judge": _judge,
    },
)
