"""`durable replay --sample N --since T --workflow module:FLOW`: the check before a deploy.

Replays the newest N recorded runs of the workflow (finished and in flight)
started at or after T against the code named by ``--workflow``, and exits 1
naming every run that would diverge and why (processors.engine.deploycheck).
Writes nothing.
"""

from __future__ import annotations

import asyncio

import typer
from rich.markup import escape

from processors.engine.deploycheck import RunCheck, check_run
from processors.engine.replay import NotReplayable, recorded_run
from processors.engine.versions import Versions, version_of
from processors.models import client_from_env
from streams.cli.common import err, fail, iso_ms, out, settings, workflows
from streams.runview import list_runs


def deploy_check(namespace: str | None, specs: list[str] | None, sample: int, since: str | None) -> None:
    """Check ``sample`` recorded runs against the workflows in ``specs``; exit 0 (none diverge) or 1."""
    if sample < 1:
        raise fail("--sample must be at least 1", 2)
    loaded = Versions(workflows(specs))
    s = settings(namespace)
    since_ms = iso_ms(since) if since is not None else None
    runs = [r for r in list_runs(s, since_ms=since_ms, limit=1_000_000) if r.workflow in loaded][:sample]
    if not runs:
        raise fail(f"no recorded run of {sorted(loaded)} in namespace {s.namespace} to check", 2)
    checks: list[RunCheck] = []
    for view in runs:
        wf = loaded[view.workflow]
        try:
            run = recorded_run(view.events)
        except NotReplayable as exc:
            checks.append(RunCheck(view.run_id, view.status_name, [f"not replayable: {exc}"], None))
            continue
        models = client_from_env(simulations=[wf.simulation])
        checks.append(asyncio.run(check_run(run, wf, models)))
    diverging = [c for c in checks if c.diverges]
    for c in diverging:
        for reason in c.reasons:
            out.print(f"[red]diverges[/red] {escape(c.run_id)} ({c.status}): {escape(reason)}", soft_wrap=True)
    names = ", ".join(f"{wf.name} {version_of(wf)}" for wf in (loaded[n] for n in loaded))
    summary = f"{len(checks)} recorded run(s) replayed against {names}: {len(diverging)} would diverge"
    if diverging:
        err.print(f"{summary}; do not deploy this code as the same version", highlight=False)
        raise typer.Exit(1)
    out.print(summary, highlight=False)
