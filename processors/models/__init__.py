"""Model clients: the ``ModelClient`` protocol, a local deterministic simulation and an OpenAI-compatible HTTP client.

``client_from_env()`` picks one: the OpenAI-compatible client when
``DURABLE_MODEL_BASE_URL`` is set, else the local simulation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from processors.models.client import (
    Message,
    ModelBadResponse,
    ModelClient,
    ModelConfigError,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelRequest,
    ModelResponse,
    ModelTimeout,
    ModelUnavailable,
    estimate_tokens,
)
from processors.models.local import DEFAULT_PROFILE, Answer, LocalModel, PurposeProfile, Simulation, keywords
from processors.models.openai_compat import OpenAICompatibleClient
from processors.models.prices import DEFAULT_PRICES, SIMULATED_MODEL, Price, PriceTable, UnknownModelPrice, cost

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_PROFILE",
    "SIMULATED_MODEL",
    "Answer",
    "LocalModel",
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
    "OpenAICompatibleClient",
    "Price",
    "PriceTable",
    "PurposeProfile",
    "Simulation",
    "UnknownModelPrice",
    "client_from_env",
    "cost",
    "estimate_tokens",
    "keywords",
]


def client_from_env(
    env: Mapping[str, str] | None = None, simulations: Iterable[Simulation | None] = ()
) -> ModelClient:
    """The OpenAI-compatible client if ``DURABLE_MODEL_BASE_URL`` is set, else ``LocalModel`` (the simulation).

    ``simulations``: how the loaded workloads' model calls are simulated (their ``Workflow.simulation``).
    """
    env = os.environ if env is None else env
    if env.get("DURABLE_MODEL_BASE_URL"):
        return OpenAICompatibleClient.from_env(env)
    return LocalModel(prices=PriceTable.from_env(env), simulation=Simulation.merged(simulations))
