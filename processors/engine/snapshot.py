"""The snapshot of settings an attempt of a workflow runs under, and the workflow's identity in it.

Kept apart from :mod:`processors.engine.settings` (what a setting is), which
the workflow declaration itself imports.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from processors.engine.canonical import canonical_json
from processors.engine.settings import MODEL_SETTINGS, WORKFLOW_FINGERPRINT, WORKFLOW_VERSION, Env, Setting, Snapshot
from processors.engine.workflow import Workflow


def fingerprint(wf: Workflow) -> str:
    """A digest of the workflow's declaration: steps, their order, handlers, retry policies, timeouts, topics.

    It changes when the declaration does (not when a handler's body does: the
    declared ``version`` is for that).
    """

    def name_of(obj: Any) -> str | None:
        if obj is None:
            return None
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"

    def policy(p: Any) -> dict[str, Any]:
        return {
            "max_attempts": p.max_attempts,
            "initial_backoff_s": p.initial_backoff_s,
            "multiplier": p.multiplier,
            "max_backoff_s": p.max_backoff_s,
            "jitter": p.jitter,
            "non_retryable": [k if isinstance(k, str) else name_of(k) for k in p.non_retryable],
            # Only when not the default, so declarations that never pause keep their fingerprints.
            **({"on_exhausted": p.on_exhausted} if p.on_exhausted != "compensate" else {}),
        }

    declaration = {
        "name": wf.name,
        "topics": [wf.input_topic, wf.input_schema, wf.output_topic, wf.output_schema],
        "steps": [
            {
                "name": s.name,
                "after": list(s.after),
                "handler": name_of(s.handler),
                "compensate": name_of(s.compensate),
                "retry": policy(s.retry),
                "compensate_retry": policy(s.compensate_retry),
                "timeout_s": s.timeout_s,
                "local": s.local,
                **({"since": s.since} if s.since else {}),
            }
            for s in wf.steps
        ],
        "settings": sorted(s.name for s in wf.settings),
    }
    return hashlib.sha256(canonical_json(declaration).encode()).hexdigest()[:16]


# Per workflow object (frozen, so its declaration never changes): every attempt's snapshot needs these, and the
# fingerprint (a SHA-256 over the canonical declaration) was most of what capturing a snapshot cost.
_ENGINE_SETTINGS: dict[int, tuple[Workflow, tuple[Setting, ...]]] = {}


def engine_settings(wf: Workflow) -> tuple[Setting, ...]:
    """What the engine records for every workflow: its version and fingerprint, and the model client's settings."""
    cached = _ENGINE_SETTINGS.get(id(wf))
    if cached is not None and cached[0] is wf:  # the entry holds ``wf``, so its id cannot have been reused
        return cached[1]
    found = (
        Setting.fixed(WORKFLOW_VERSION, wf.version, "the version the workflow declares"),
        Setting.fixed(WORKFLOW_FINGERPRINT, fingerprint(wf), "digest of the workflow's declaration"),
        *MODEL_SETTINGS,
    )
    _ENGINE_SETTINGS[id(wf)] = (wf, found)
    return found


def capture(wf: Workflow, env: Env | None = None) -> Snapshot:
    """The snapshot an attempt of ``wf`` runs under: every engine and workflow setting, by name."""
    env = os.environ if env is None else env
    return {s.name: s.read(env) for s in (*engine_settings(wf), *wf.settings)}
