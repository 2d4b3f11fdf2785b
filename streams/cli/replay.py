"""`durable replay`: a run on its captured inputs, one step on a known-bad input, a window of inputs in a sandbox.

Replays re-execute with the current code and write nothing to production topics.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from processors.engine.replay import (
    RecordedAttempt,
    RecordedRun,
    RunReplay,
    replay_attempt,
    replay_run,
    setting_differences,
)
from processors.engine.versions import Versions
from processors.engine.workflow import Workflow
from processors.models import ModelClient, client_from_env
from streams.cli.common import (
    NamespaceOpt,
    WorkflowOpt,
    err,
    fail,
    iso_ms,
    out,
    settings,
    workflow_named,
    workflows,
)
from streams.cli.deploycheck import deploy_check
from streams.cli.runs import recorded
from streams.reading import dumps
from streams.sandbox import SandboxRefused, replay_window

VERDICT_STYLE = {"same": "green", "failure reproduced": "yellow", "different": "red", "new failure": "red"}


def _models(wf: Workflow) -> ModelClient:
    return client_from_env(simulations=[wf.simulation])


def _print_settings(run: RecordedRun, wf: Workflow, live: bool) -> None:
    """Before replaying: which recorded settings differ from this machine's, and which ones the replay uses."""
    if not run.settings_recorded:
        out.print(
            "settings: none recorded with this run (journaled before settings capture); it replays under this "
            "machine's settings",
            highlight=False,
        )
        return
    found = setting_differences(run, wf)
    if not found:
        out.print("settings: as recorded", highlight=False)
        return
    served = [d for d in found if not d.identity]
    code = [d for d in found if d.identity]
    if served:
        out.print("settings: recorded values differ from this machine's; the replay uses the recorded ones:", highlight=False)
        for d in served:
            out.print(f"  {escape(d.describe())}", highlight=False, soft_wrap=True)
        if live and any(d.name.startswith("model.") for d in served):
            out.print("  (--live: model calls go to this machine's model client)", highlight=False)
    if code:
        out.print("code: the workflow differs from the recorded one; the replay runs this machine's:", highlight=False)
        for d in code:
            out.print(f"  {escape(d.describe())}", highlight=False, soft_wrap=True)


def _print_run_replay(replayed: RunReplay, live: bool) -> None:
    run = replayed.run
    table = Table(title=f"replay of {run.run_id} ({'live' if live else 'recorded values served'})")
    for col in ("step", "attempt", "recorded", "replayed", "verdict"):
        table.add_column(col, overflow="fold")
    for a in replayed.attempts:
        was = "ok" if a.recorded.error is None else f"{a.recorded.error.get('type')}: {a.recorded.error.get('message')}"
        now = "ok" if a.error is None else f"{a.error.get('type')}: {a.error.get('message')}"
        style = VERDICT_STYLE[a.verdict]
        table.add_row(a.recorded.label, str(a.recorded.attempt), was, now, f"[{style}]{a.verdict}[/{style}]")
    for skipped in replayed.skipped:
        table.add_row(skipped.label, str(skipped.attempt), "(in flight)", "-", "not finished")
    out.print(table)
    for a in replayed.attempts:
        if a.diff:
            out.print(f"[bold]{a.recorded.label} #{a.recorded.attempt}[/bold]")
            for line in a.diff:
                colour = "red" if line.startswith("-") else "green" if line.startswith("+") else "dim"
                out.print(f"[{colour}]{escape(line)}[/{colour}]", highlight=False)
    verdict = "would complete" if replayed.would_complete else "would not complete"
    out.print(f"run: recorded {run.status}; with the current code it {verdict}", highlight=False)
    if replayed.result is not None and run.status != "COMPLETED":
        out.print(f"  result it would give: {dumps(replayed.result)}", highlight=False, soft_wrap=True)
    elif replayed.result is not None and replayed.result != run.output:
        changed = {k: (run.output or {}).get(k) for k in replayed.result if replayed.result.get(k) != (run.output or {}).get(k)}
        out.print(f"  result differs in {sorted(changed)}", highlight=False)
    counts = {v: sum(1 for a in replayed.attempts if a.verdict == v) for v in VERDICT_STYLE}
    out.print(", ".join(f"{n} {v}" for v, n in counts.items() if n), highlight=False)


def replay(
    run_id: Annotated[str | None, typer.Argument(help="The run to replay, from its journal.")] = None,
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
    live: Annotated[bool, typer.Option(help="Call tools and models for real instead of serving recorded values.")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="Replay a run export (`durable runs export`).")] = None,
    step: Annotated[str | None, typer.Option(help="Replay one step against --input.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="The step input as JSON ({input, deps}), e.g. from `dlq show --input`.")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="With --step: take the workflow and recorded values from this run.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Window start (ISO-8601): replay its inputs in a sandbox.")] = None,
    to: Annotated[str | None, typer.Option(help="Window end (ISO-8601, exclusive).")] = None,
    sandbox: Annotated[str | None, typer.Option(help="Sandbox namespace for a window replay (default: <ns>-replay-<time>).")] = None,
    timeout: Annotated[float, typer.Option(help="Window replay: give up waiting for outputs after S seconds.")] = 120.0,
    sample: Annotated[
        int | None,
        typer.Option(help="Deploy check: replay the newest N recorded runs against --workflow; exit 1 if any diverge."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Deploy check: only runs started at or after (ISO-8601).")] = None,
    export_spans: Annotated[
        bool, typer.Option(help="Window replay: also send the sandbox's spans to the OTLP exporter (off: replays stay out of production telemetry).")
    ] = False,
) -> None:
    """Re-execute with the current code and compare with what was recorded; writes nothing to production topics.

    Four forms: `replay RUN_ID` (every attempt of a run on its captured inputs), `replay --step S --input F
    [--run RUN_ID]` (one step against a known-bad input), `replay --from T1 --to T2` (a window of inputs, run in
    a sandbox namespace, outputs diffed), `replay --sample N [--since T] --workflow new:FLOW` (the deploy check:
    recorded runs against new code). Exit codes: 0 all same; 1 differences or new failures (or runs that would
    diverge); 3 failures reproduced and nothing different; 2 usage errors.
    """
    modes = [run_id is not None or file is not None, step is not None, from_ is not None, sample is not None]
    if sum(modes) != 1:
        raise fail("give a RUN_ID (or --file), or --step with --input, or --from with --to, or --sample", 2)
    if sample is not None:
        deploy_check(namespace, workflow, sample, since)
        return
    if from_ is not None:
        _replay_window(namespace, workflow, from_, to, sandbox, timeout, export_spans)
        return
    if step is not None:
        _replay_step(namespace, workflow, step, input_file, run, live)
        return
    if file is not None:
        run_export = RecordedRun.from_json(file.read_text())
    else:
        assert run_id is not None
        run_export = recorded(settings(namespace), run_id)
    # The version the run started on, when it is loaded; else the newest (the code a fix would run).
    wf = Versions(workflows(workflow)).version(run_export.workflow, run_export.version) or workflow_named(
        run_export.workflow, workflow
    )
    _print_settings(run_export, wf, live)
    replayed = asyncio.run(replay_run(run_export, wf, live=live, models=_models(wf)))
    _print_run_replay(replayed, live)
    raise typer.Exit(replayed.exit_code)


def _replay_step(
    namespace: str | None, workflow: list[str] | None, step: str, input_file: Path | None, run: str | None, live: bool
) -> None:
    if input_file is None:
        raise fail("--step needs --input FILE.json", 2)
    try:
        step_input = json.loads(input_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"cannot read {input_file}: {exc}", 2) from None
    if not isinstance(step_input, dict) or "input" not in step_input:
        raise fail("the input must be a JSON object with 'input' (and 'deps'), as `dlq show --input` prints", 2)
    step_input.setdefault("deps", {})
    recorded_calls: list[dict[str, object]] | None = None
    recorded_settings: dict[str, object] | None = None
    run_id = run or "replay"
    if run is not None:
        run_export = recorded(settings(namespace), run)
        wf = workflow_named(run_export.workflow, workflow)
        attempts = [a for a in run_export.attempts if a.step == step and a.action == "run" and a.finished]
        recorded_calls = attempts[-1].recorded if attempts and not live else None
        recorded_settings = attempts[-1].settings if attempts else None
    else:
        wfs = workflows(workflow)
        wf = next((w for w in wfs if w.has_step(step)), wfs[0])
    if not wf.has_step(step):
        raise fail(f"workflow {wf.name} has no step {step!r}", 2)
    attempt = RecordedAttempt(step, "run", 1, step_input, recorded=recorded_calls or [], settings=recorded_settings)
    replayed = asyncio.run(
        replay_attempt(wf, run_id, attempt, live=recorded_calls is None, models=_models(wf))
    )
    if replayed.error is None:
        print(json.dumps(replayed.output, indent=2, sort_keys=True))
        raise typer.Exit(0)
    message = f"{replayed.error['type']}: {replayed.error['message']}"
    err.print(message, style="red", markup=False, highlight=False)
    print(str(replayed.error.get("traceback", "")).rstrip(), file=sys.stderr)
    raise typer.Exit(1)


def _replay_window(
    namespace: str | None,
    workflow: list[str] | None,
    from_: str,
    to: str | None,
    sandbox: str | None,
    timeout: float,
    export_spans: bool,
) -> None:
    if to is None:
        raise fail("--from needs --to", 2)
    s = settings(namespace)
    start, end = iso_ms(from_), iso_ms(to)
    wf = workflows(workflow)[0]
    box = sandbox or f"{s.namespace}-replay-{int(time.time())}"
    try:
        result = replay_window(
            s, wf, start, end, box, ignore=wf.diff_ignores, timeout_s=timeout, export_spans=export_spans
        )
    except SandboxRefused as exc:
        raise fail(f"replay refused: {exc}", 2) from None
    out.print(
        f"window {from_} .. {to}: {result.inputs} input record(s), {result.runs} run(s), replayed in namespace "
        f"{result.sandbox} in {result.elapsed_s:.1f}s",
        highlight=False,
    )
    for d in result.diffs:
        if d.kind == "changed":
            fields = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in d.changes.items())
            out.print(f"  changed  {d.run_id}  {fields}", highlight=False, soft_wrap=True)
        elif d.kind in ("missing", "new"):
            out.print(f"  {d.kind:8} {d.run_id}", highlight=False)
    counts = {k: result.count(k) for k in ("same", "changed", "missing", "new")}
    out.print("  ".join(f"{k}: {n}" for k, n in counts.items()), highlight=False)
    raise typer.Exit(0 if counts["changed"] == counts["missing"] == counts["new"] == 0 else 1)
