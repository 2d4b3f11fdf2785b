"""Loading workflows by name (``module:attribute``), as ``--workflow`` and ``DURABLE_WORKFLOWS`` give them."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from processors.engine.versions import VersionConflict, Versions
from processors.engine.workflow import Workflow

# The FNOL claims agent is the workflow a fresh checkout runs; any other is named the same way.
DEFAULT_WORKFLOWS = ("processors.fnol:FNOL",)


class WorkflowNotFound(ValueError):
    """A ``module:attribute`` that does not name an importable Workflow."""


def workflow_specs(given: Iterable[str] | None = None) -> list[str]:
    """The workflows to load: ``given``, else ``DURABLE_WORKFLOWS`` (comma-separated), else the default."""
    chosen = [s for s in (given or []) if s]
    if chosen:
        return chosen
    env = [s.strip() for s in os.environ.get("DURABLE_WORKFLOWS", "").split(",") if s.strip()]
    return env or list(DEFAULT_WORKFLOWS)


def load_workflows(specs: Iterable[str] | None = None) -> list[Workflow]:
    """Import workflows named ``module:attribute`` (default: :func:`workflow_specs`).

    Modules are looked up in the current directory too, as ``python -m`` and
    uvicorn do, so a user's own workflow module is found from the ``durable`` script.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    out: list[Workflow] = []
    for spec in workflow_specs(specs):
        module, _, attr = spec.partition(":")
        try:
            wf = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise WorkflowNotFound(f"cannot load workflow {spec!r} (module:attribute): {exc}") from exc
        if not isinstance(wf, Workflow):
            raise WorkflowNotFound(f"{spec} is a {type(wf).__name__}, not a Workflow")
        out.append(wf)
    # Several versions of one workflow may load side by side (processors.engine.versions); not one version twice.
    try:
        Versions(out)
    except VersionConflict as exc:
        raise WorkflowNotFound(str(exc)) from None
    return out
