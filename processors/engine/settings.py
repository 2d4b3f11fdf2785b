"""Settings that shape what a step does, captured with every attempt so a replay runs under them.

A step's behaviour depends on more than its input and its outside values
(clock, random, model answers): a configured failure rate decides whether it
draws a random number at all, a budget decides a gate, a model's name and
price decide what a call costs. Such values are **settings**. A workflow
declares its own (:class:`Setting`: a name and how to read it from the
environment); the engine adds the model client's and the workflow's identity
(:func:`processors.engine.snapshot.engine_settings`). Every attempt runs under a
snapshot of them (:func:`processors.engine.snapshot.capture`): its step reads a setting through its context
(``ctx.setting(SETTING)``), the snapshot travels with the attempt's result
(``settings_json``) into the run's journal, and a replay serves the recorded
snapshot back, so the step computes what it computed on whatever machine
replays it. :func:`differences` says which recorded values differ from the
replaying machine's, so a replay can print them before it runs.

Values must be JSON (numbers, strings, booleans, null, lists, objects), and
must not be secrets: they are written to the journal in clear.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from processors.engine.canonical import canonical_json
from processors.models import SIMULATED_MODEL, ModelConfigError, PriceTable

Env = Mapping[str, str]
Snapshot = dict[str, Any]

# The workflow's identity: recorded so a replay says when it runs other code, but never "served back".
WORKFLOW_VERSION = "workflow.version"
WORKFLOW_FINGERPRINT = "workflow.fingerprint"
IDENTITY = frozenset({WORKFLOW_VERSION, WORKFLOW_FINGERPRINT})


@dataclass(frozen=True)
class Setting:
    """One named value that shapes a step, and how to read it from an environment.

    ``read`` must be deterministic for the same environment and return JSON;
    a fixed value (``Setting.fixed``) ignores the environment.
    """

    name: str
    read: Callable[[Env], Any]
    doc: str = ""

    @classmethod
    def fixed(cls, name: str, value: Any, doc: str = "") -> Setting:
        """A setting bound in code (e.g. a demo's failure rate): the same on every machine, still recorded."""
        return cls(name, lambda _env: value, doc)

    def current(self, env: Env | None = None) -> Any:
        """This process's value of the setting."""
        return self.read(os.environ if env is None else env)


def _endpoint(url: str) -> str:
    # Where the model is, never who calls it: user info, query and fragment dropped.
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _model_name(env: Env) -> str:
    return env.get("DURABLE_MODEL_NAME", "") if env.get("DURABLE_MODEL_BASE_URL") else SIMULATED_MODEL


def _model_price(env: Env) -> Any:
    try:
        price = PriceTable.from_env(env).price(_model_name(env))
    except ModelConfigError as exc:  # a misconfigured table is recorded as such, not a crash of the snapshot
        return {"error": str(exc)}
    return {"input_per_mtok": price.input_per_mtok, "output_per_mtok": price.output_per_mtok}


MODEL_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model.endpoint",
        lambda env: _endpoint(env["DURABLE_MODEL_BASE_URL"]) if env.get("DURABLE_MODEL_BASE_URL") else "local",
        "where model calls go (DURABLE_MODEL_BASE_URL without credentials; 'local': the simulation)",
    ),
    Setting("model.name", _model_name, "the model answering calls that name none (DURABLE_MODEL_NAME)"),
    Setting("model.price", _model_price, "USD per million tokens of that model (DURABLE_MODEL_PRICES)"),
    Setting("model.speed", lambda env: env.get("DURABLE_MODEL_SPEED", "1.0"), "the simulation's speed-up"),
    Setting("model.timeout_s", lambda env: env.get("DURABLE_MODEL_TIMEOUT_S", "30"), "the HTTP client's timeout"),
)


@dataclass(frozen=True)
class Difference:
    """One setting whose recorded value is not this machine's (``recorded`` None and ``missing``: not recorded)."""

    name: str
    recorded: Any
    here: Any
    missing: bool = False

    @property
    def identity(self) -> bool:
        """A difference of code (workflow version or fingerprint), which a replay cannot serve back."""
        return self.name in IDENTITY

    def describe(self) -> str:
        if self.missing:
            return f"{self.name}: not recorded; here {canonical_json(self.here)}"
        return f"{self.name}: recorded {canonical_json(self.recorded)}, here {canonical_json(self.here)}"


def differences(recorded: Iterable[Mapping[str, Any]], here: Mapping[str, Any]) -> list[Difference]:
    """Every setting some recorded snapshot holds with another value than ``here``, or does not hold at all.

    ``recorded`` is the snapshots of a run's attempts (usually all alike); a
    setting recorded with several values is reported once per value.
    """
    snapshots = list(recorded)
    out: list[Difference] = []
    for name in sorted(set(here) | {n for s in snapshots for n in s}):
        values = {canonical_json(s[name]): s[name] for s in snapshots if name in s}
        if snapshots and name in here and not values:
            out.append(Difference(name, None, here[name], missing=True))
        for value in values.values():
            if name not in here or canonical_json(here[name]) != canonical_json(value):
                out.append(Difference(name, value, here.get(name)))
    return out
