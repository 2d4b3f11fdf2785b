"""Model prices: USD per million input and output tokens, and the cost of a call.

The defaults hold the simulated model and a few common OpenAI-compatible
names. Override or extend them with the environment variable
``DURABLE_MODEL_PRICES``, a JSON object of model name to prices, e.g.::

    DURABLE_MODEL_PRICES='{"my-vllm-model": {"input": 0.2, "output": 0.6}}'

Entries there replace defaults of the same name. A model is looked up by its
exact name, else by the longest priced name it extends with "-" (so a dated
snapshot such as "gpt-4o-mini-2024-07-18" takes the price of "gpt-4o-mini").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from processors.models.client import ModelConfigError

__all__ = ["DEFAULT_PRICES", "PRICES_ENV", "SIMULATED_MODEL", "Price", "PriceTable", "UnknownModelPrice", "cost"]

PRICES_ENV = "DURABLE_MODEL_PRICES"
SIMULATED_MODEL = "local-sim-1"


class UnknownModelPrice(ModelConfigError, LookupError):
    """No price is known for a model: add it to ``DURABLE_MODEL_PRICES``."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per one million input tokens and per one million output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError("prices cannot be negative")

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for a call of that many tokens."""
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError("token counts cannot be negative")
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1_000_000


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        # The local simulation, priced like a mid-range hosted model so that a
        # simulated FNOL run costs what the flagship run does (~$0.018).
        SIMULATED_MODEL: Price(5.00, 15.00),
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4.1-nano": Price(0.10, 0.40),
        "llama-3.1-8b-instruct": Price(0.05, 0.08),
    }
)


class PriceTable:
    """A price per model name, with the snapshot-suffix lookup described in the module docstring."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PriceTable:
        """The defaults, overridden by ``DURABLE_MODEL_PRICES`` when set; ``ModelConfigError`` if it is malformed."""
        raw = (os.environ if env is None else env).get(PRICES_ENV, "")
        return _table_for(raw)

    def models(self) -> tuple[str, ...]:
        """The priced model names, sorted."""
        return tuple(sorted(self._prices))

    def price(self, model: str) -> Price:
        """The price of ``model``; ``UnknownModelPrice`` if neither it nor a name it extends is priced."""
        found = self._prices.get(model)
        if found is not None:
            return found
        prefixes = [name for name in self._prices if model.startswith(name + "-")]
        if not prefixes:
            raise UnknownModelPrice(f"no price for model {model!r}; set it in {PRICES_ENV}", model=model)
        return self._prices[max(prefixes, key=len)]

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        """USD for a call of ``model`` with that many tokens."""
        return self.price(model).cost(tokens_in, tokens_out)


@lru_cache(maxsize=8)
def _table_for(raw: str) -> PriceTable:
    # Cached by the variable's text: parsing once per distinct value, yet a
    # changed environment (tests, a reloaded config) is still honoured.
    prices = dict(DEFAULT_PRICES)
    if raw.strip():
        try:
            overrides = json.loads(raw)
            if not isinstance(overrides, dict):
                raise TypeError("expected a JSON object of model name to prices")
            for name, entry in overrides.items():
                prices[name] = Price(float(entry["input"]), float(entry["output"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelConfigError(
                f'{PRICES_ENV} must look like {{"model": {{"input": 0.5, "output": 1.5}}}}: {exc}'
            ) from exc
    return PriceTable(prices)


def cost(model: str, tokens_in: int, tokens_out: int) -> float:
    """USD for a call of ``model``, from the default table and ``DURABLE_MODEL_PRICES``."""
    return PriceTable.from_env().cost(model, tokens_in, tokens_out)
