"""`durable demo`: a broker, a worker and a workflow's sample inputs, start to finish, in one command.

Generic: it runs whatever workflow it is given (``--workflow``; by default
the FNOL demo, ``processors.fnol.demo:FNOL_DEMO``) on its intake's samples,
prints each output as the workflow describes it, draws the trace of one run
that passed its evaluation, then shows a retried run, a compensated run and
the dead letters.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from processors import pii
from processors.engine.inputs import Accepted, parse_lines
from processors.engine.status import run_status
from processors.engine.workflow import Workflow
from schemas import encode
from schemas.models import JournalEvent, JournalKind, RunStatus
from streams import audit, authentication, deadletters, discovery, signing, traces
from streams.broker import EmbeddedBroker
from streams.cli.common import configure_logging, err, fail, out
from streams.cli.trace import render
from streams.config import Settings
from streams.intake import input_topic, produce_inputs
from streams.journal import journals
from streams.kafka import partition_for
from streams.reading import follow
from streams.topics import Topics, ensure_topics
from streams.worker import Worker
from streams.workflows import load_workflows
from streams.writer import DeliveryFailed, Writer

DEMO_WORKFLOW = "processors.fnol.demo:FNOL_DEMO"


def demo(
    workflow: Annotated[str, typer.Option(help="The workflow to demonstrate, module:attribute.")] = DEMO_WORKFLOW,
    file: Annotated[Path | None, typer.Option(help="Inputs to run (default: the workflow's samples).")] = None,
    timeout: Annotated[float, typer.Option(help="Give up after S seconds.")] = 90.0,
    low_latency: Annotated[
        bool, typer.Option(help="Short fetch waits (the default; --no-low-latency shows librdkafka's long waits).")
    ] = True,
    rate: Annotated[float, typer.Option(help="Inputs produced per second (0: all at once).")] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a broker and a worker, run the samples, print every output, one trace, the retries and sagas."""
    configure_logging(verbose)
    # The demo's own throwaway key (public, never a production key): no key file is generated, and the
    # shipped fraud-history table, keyed under it, finds the sample claimants.
    os.environ[pii.KEY_ENV] = pii.DEMO_KEY
    # One process signs and verifies: a throwaway worker secret, unless one is set; no secret file is generated.
    os.environ.setdefault(authentication.SECRET_ENV, secrets.token_hex(32))
    t0 = time.monotonic()
    [wf] = load_workflows([workflow])
    samples = file or (wf.intake.samples if wf.intake is not None else None)
    if samples is None:
        raise fail(f"workflow {wf.name} has no samples: pass --file")
    with open(samples, encoding="utf-8") as f:
        good = [p for p in parse_lines(wf, f) if isinstance(p, Accepted)]
    if not good:
        raise fail("no valid inputs in the file")
    external = discovery.bootstrap_servers() if _env_broker() else None
    b = None if external else EmbeddedBroker().start()
    bootstrap = external or (b.bootstrap_servers if b else "")
    ns = f"demo{int(time.time())}"
    state_dir = tempfile.TemporaryDirectory(prefix="durable-demo-")
    # The demo signs its decisions with a throwaway key in its temporary state (unless one is set).
    if signing.signing_on() and not os.environ.get(signing.KEY_ENV):
        signing.use_fresh_key(Path(state_dir.name))
    settings = Settings.from_env(
        namespace=ns,
        bootstrap_servers=bootstrap,
        worker_name="demo",
        state_dir=Path(state_dir.name),
        low_latency=low_latency or None,
    )
    err.print(
        f"broker {bootstrap} ({'external' if external else 'embedded'}) up in {time.monotonic() - t0:.1f}s; namespace {ns}",
        markup=False,
    )
    w = Worker(settings, [wf]).start()
    try:
        ready_by = time.monotonic() + 30
        while not w.ready and not w.failed and time.monotonic() < ready_by:
            time.sleep(0.05)  # the groups form (~3.5 s on the embedded broker) before inputs arrive
        err.print(f"worker ready in {time.monotonic() - t0:.1f}s")
        _produce_paced(settings, wf, good, rate)
        err.print(f"produced {len(good)} inputs" + (f" at {rate:g}/s" if rate > 0 else ""))
        expected = {g.run_id for g in good}
        first = last = None
        deadline_left = max(1.0, timeout - (time.monotonic() - t0))
        for rec in follow(
            settings,
            Topics(ns).name(wf.output_topic),
            group=None,
            from_beginning=True,
            idle_timeout_s=deadline_left,
            follow_forever=True,
        ):
            if rec.key not in expected:
                continue
            expected.discard(rec.key)
            now = time.monotonic() - t0
            first = first or now
            last = now
            out.print(f"{now:5.1f}s {rec.key} {wf.describe(rec.value)}", markup=False, highlight=False)
            if not expected or w.failed or time.monotonic() - t0 > timeout:
                break
        if w.failed:
            raise fail(f"worker failed: {w.failed}")
        if expected:
            raise fail(f"{len(expected)} of {len(good)} outputs missing after {timeout:.0f}s, e.g. {sorted(expected)[:3]}")
        err.print(f"all {len(good)} outputs in {last:.1f}s (first after {first:.1f}s), from start of `durable demo`")
        if w.telemetry is not None:
            w.telemetry.flush()
        runs = journals(settings)
        _trace_one(settings, wf, [g.run_id for g in good], runs)
        _sagas(settings, runs)
        _audit(settings, wf)
    finally:
        w.stop()
        w.join(15)
        if b:
            b.stop()
        state_dir.cleanup()


def _produce_paced(settings: Settings, wf: Workflow, good: list[Accepted], rate: float) -> None:
    """Produce inputs at ``rate`` per second, as they would arrive (0: all at once)."""
    if rate <= 0:
        produce_inputs(settings, wf, good)
        return
    topic = input_topic(settings, wf)
    ensure_topics(settings, [topic])
    writer = Writer(settings)
    start = time.monotonic()
    try:
        for i, g in enumerate(good):
            while time.monotonic() < start + i / rate:
                time.sleep(0.005)  # pacing the load, as arrivals would be paced
            writer.send(
                topic, encode(wf.input_schema, g.record), key=g.run_id, partition=partition_for(g.run_id, settings.partitions)
            )
            writer.poll(0)
        writer.flush(30)
    except DeliveryFailed as exc:
        raise fail(f"some inputs were not acknowledged by the broker: {exc}") from None
    finally:
        writer.close()


def _trace_one(settings: Settings, wf: Workflow, run_ids: list[str], runs: dict[str, list[JournalEvent]]) -> None:
    """Draw the trace of the first run that completed and passed its evaluation (else the first to complete)."""
    completed = [r for r in run_ids if run_status(runs.get(r, [])) is RunStatus.COMPLETED]
    if not completed:
        return
    views = (traces.load(settings, r, wf) for r in completed)
    chosen = next((v for v in views if v.evaluation is None or v.evaluation.outcome == "pass"), None)
    view = chosen or traces.load(settings, completed[0], wf)
    if not view.spans:
        return
    table, lines = render(view, wf.describe)
    out.print()
    out.print(table)
    for line in lines:
        out.print(line)


def _sagas(settings: Settings, runs: dict[str, list[JournalEvent]]) -> None:
    """What the engine did beyond the happy path: one retried, one compensated and one paused run, the dead letters."""
    retried = {r: ev for r, ev in runs.items() if any(e.kind is JournalKind.STEP_RETRY_WAITING for e in ev)}
    compensated = {r: ev for r, ev in runs.items() if any(e.kind is JournalKind.RUN_COMPENSATED for e in ev)}
    paused = {r: ev for r, ev in runs.items() if run_status(ev) is RunStatus.PAUSED}
    out.print(
        f"\n[bold]{len(retried)}[/bold] run(s) retried a step after a backoff; "
        f"[bold]{len(compensated)}[/bold] run(s) compensated; "
        f"[bold]{len(paused)}[/bold] run(s) paused for an operator "
        "(`durable dlq redrive` resumes one, `durable runs compensate` undoes it).",
        highlight=False,
    )
    for title, chosen in (("retried", retried), ("compensated", compensated), ("paused", paused)):
        if not chosen:
            continue
        run_id, events = sorted(chosen.items())[0]
        t0 = events[0].at_ms
        out.print(f"\n{title}: {run_id}", markup=False, highlight=False)
        for e in events:
            if e.kind in (JournalKind.STEP_SCHEDULED, JournalKind.STEP_SUCCEEDED) and title != "retried":
                continue
            step = f" {e.step}" if e.step else ""
            attempt = f" #{e.attempt}" if e.attempt else ""
            line = f"  +{e.at_ms - t0:5d} ms  {e.kind.value}{step}{attempt}  {_note(e)}".rstrip()
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    letters = deadletters.letters(settings)
    if letters:
        out.print(f"\n{len(letters)} dead letter(s); `durable dlq list` / `show` / `redrive` handle them:")
        for entry in letters:
            out.print(
                f"  {entry.letter.dead_letter_id}  {entry.letter.reason}", markup=False, highlight=False, soft_wrap=True
            )


def _audit(settings: Settings, wf: Workflow) -> None:
    """Verify every run as `durable audit verify --all` does: hash chains and signed outputs (README "Trust")."""
    if not signing.signing_on():
        return
    t0 = time.monotonic()
    evidence = audit.read(settings, [Topics(settings.namespace).name(wf.output_topic)])
    results = audit.verify_all(evidence, signing.keyring_from_env())
    took = time.monotonic() - t0
    ok = sum(r.ok for r in results)
    out.print(
        f"\naudit: {ok} of {len(results)} runs verified (hash chains and signed outputs) in {took:.2f}s, "
        f"{len(results) / took if took > 0 else 0:.0f} runs/s; `durable audit verify --all` does the same",
        highlight=False,
    )
    for r in results:
        if not r.ok:
            out.print(f"  BROKEN {r.run_id} at {r.where}: {r.problem}", markup=False, highlight=False)


def _note(e: JournalEvent) -> str:
    """What a journal event says, briefly (for the retried and compensated runs the demo shows)."""
    detail = json.loads(e.detail_json) if e.detail_json else {}
    if e.kind in (JournalKind.STEP_FAILED, JournalKind.COMPENSATION_FAILED):
        return f"{detail.get('type')}: {detail.get('message')}"
    if e.kind in (JournalKind.STEP_RETRY_WAITING, JournalKind.COMPENSATION_RETRY_WAITING):
        return f"attempt {detail.get('next_attempt')} due in {detail.get('backoff_ms')} ms"
    if e.kind is JournalKind.STEP_DEAD_LETTERED:
        return f"dead letter {detail.get('dead_letter_id')}"
    if e.kind is JournalKind.COMPENSATION_SUCCEEDED:
        return json.dumps(detail)
    if e.kind in (JournalKind.RUN_COMPENSATED, JournalKind.RUN_FAILED):
        return str(detail.get("reason", ""))
    if e.kind is JournalKind.RUN_PAUSED:
        output = detail.get("output")
        status = f"; output {output.get('status')}" if isinstance(output, dict) and output.get("status") else ""
        return f"{detail.get('error_type')} after {detail.get('attempts')} attempt(s){status}"
    return ""


def _env_broker() -> bool:
    return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
