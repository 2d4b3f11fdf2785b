"""The FNOL simulation of the model: answers shaped like each tool's, figures near the flagship run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from processors.fnol.simulation import FNOL_PROFILES, FNOL_SIMULATION
from processors.models import SIMULATED_MODEL, LocalModel, ModelRequest, PriceTable
from tests.helpers import claim_prompt

T = TypeVar("T")
FAST = 10_000.0  # speed factor: a simulated 1.1 s call sleeps 0.11 ms


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_local_model_answers_are_json_derived_from_the_prompt() -> None:
    model = LocalModel(speed=FAST, simulation=FNOL_SIMULATION)

    def ask(purpose: str, prompt: str) -> dict[str, Any]:
        response = run(model.complete(ModelRequest.of(purpose, prompt, seed=7)))
        parsed: dict[str, Any] = json.loads(response.text)
        return parsed

    assert ask("severity", claim_prompt())["severity"] == "HIGH"
    assert ask("severity", '{"loss_type": "auto_glass", "estimated_amount": 450.0}')["severity"] == "LOW"
    assert ask("plan", '{"loss_type": "property_water"}')["line"] == "property"
    assert ask("vision", claim_prompt())["labels"] == ["airbag_deployed", "frame_damage"]

    clean = ask("judge", "Decision ROUTED, reserve 4800 within limit 25000, citations: motor_comprehensive 2.1.")
    assert clean["pass"] is True and 0.7 <= clean["score"] <= 1.0
    doubtful = ask("judge", "Decision ROUTED but the policy is not in force and the reserve exceeds the limit.")
    assert doubtful["pass"] is False
    assert any("not in force" in reason for reason in doubtful["reasons"])


def test_fnol_profile_totals_are_near_the_flagship_run() -> None:
    profiles = [FNOL_PROFILES[p] for p in ("plan", "retrieval", "vision", "fraud", "severity", "judge")]
    price = PriceTable.from_env({}).price(SIMULATED_MODEL)
    tokens = sum(p.nominal_tokens for p in profiles)
    dollars = sum(price.cost(p.nominal_tokens_in, p.output_tokens) for p in profiles)
    seconds = sum(p.latency_ms for p in profiles) / 1000
    assert tokens == pytest.approx(2210, rel=0.05)
    assert dollars == pytest.approx(0.018, rel=0.10)
    assert seconds == pytest.approx(2.8, rel=0.10)
    assert FNOL_PROFILES["plan"].latency_ms == pytest.approx(80, rel=0.10)
    assert FNOL_PROFILES["plan"].nominal_tokens == pytest.approx(192, rel=0.05)


def test_a_typical_prompt_is_billed_what_its_profile_says() -> None:
    model = LocalModel(speed=FAST, simulation=FNOL_SIMULATION)
    tokens = 0
    dollars = 0.0
    for purpose, profile in FNOL_PROFILES.items():
        # A prompt of the size the profile assumes (the "user: " prefix counts too).
        words = ("claim " * profile.prompt_tokens * 2)[: profile.prompt_tokens * 4 - len("user: ")]
        response = run(model.complete(ModelRequest.of(purpose, words, seed=3)))
        assert response.tokens_in == profile.nominal_tokens_in
        # The generated text is cut at a word boundary, so it can fall a word short of the target.
        assert response.tokens_out == pytest.approx(profile.output_tokens, rel=0.05), purpose
        tokens += response.tokens
        dollars += response.cost_usd
    assert tokens == pytest.approx(2210, rel=0.05)
    assert dollars == pytest.approx(0.018, rel=0.10)


def test_latency_follows_the_profile_scaled_by_speed() -> None:
    request = ModelRequest.of("vision", claim_prompt(), seed=5)
    response = run(LocalModel(speed=FAST, simulation=FNOL_SIMULATION).complete(request))
    simulated = response.raw["simulated_latency_ms"]
    assert simulated == pytest.approx(FNOL_PROFILES["vision"].latency_ms, rel=0.05)
    assert response.latency_ms == pytest.approx(simulated / FAST, rel=1e-3)
