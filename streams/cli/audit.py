"""`durable audit verify | export`: check runs' hash chains and signed outputs (:mod:`streams.audit`)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from streams import audit, signing
from streams.cli.common import NamespaceOpt, WorkflowOpt, err, fail, out, settings, workflows
from streams.signing import Keyring
from streams.topics import Topics

audit_app = typer.Typer(
    help="Audit: verify runs' journals and signed decisions; export evidence.", no_args_is_help=True
)

KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys", help="Trusted public keys (PEM or `durable keys public --json`); default: this machine's keyring."
    ),
]


def _keyring(keys: Path | None) -> Keyring:
    try:
        return Keyring.of(signing.read_publics(keys)) if keys else signing.keyring_from_env()
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        raise fail(f"keyring: {exc}", 2) from None


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    if since.isdigit():
        return int(since)
    try:
        return int(datetime.fromisoformat(since).timestamp() * 1000)
    except ValueError:
        raise fail(f"--since {since!r}: an ISO time or epoch milliseconds", 2) from None


def _print(result: audit.RunAudit) -> None:
    if result.ok:
        keys = ",".join(sorted(result.key_ids)) or "-"
        out.print(
            f"OK {result.run_id}: {result.events} events, {result.outputs} signed outputs (key {keys})",
            highlight=False,
            markup=False,
        )
    else:
        out.print(f"BROKEN {result.run_id} at {result.where or '-'}: {result.problem}", highlight=False, markup=False)


@audit_app.command()
def verify(
    run_id: Annotated[str | None, typer.Argument(help="The run to verify.")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Verify every run of the namespace.")] = False,
    since: Annotated[
        str | None, typer.Option(help="With --all: runs started at or after (ISO time or epoch ms).")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Verify an evidence bundle offline (no broker).")] = None,
    keys: KeysOpt = None,
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Recompute hash chains from the journal and check every signature; exit 1 on the first broken run."""
    if file is not None:
        workflows(workflow)  # their output schemas, known to the codec
        data = json.loads(file.read_text(encoding="utf-8"))
        try:
            result = audit.verify_bundle(data, _keyring(keys) if keys else None)
        except (ValueError, KeyError) as exc:
            raise fail(f"{file}: {exc}", 2) from None
        if keys is None:
            err.print("verified with the keyring inside the bundle: compare its key ids with the ones you trust")
        _print(result)
        raise typer.Exit(0 if result.ok else 1)
    if (run_id is None) == (not all_runs):
        raise fail("name one RUN_ID, or --all", 2)
    s = settings(namespace)
    topics = Topics(s.namespace)
    outputs = sorted({topics.name(wf.output_topic) for wf in workflows(workflow)})
    ring = _keyring(keys)
    t0 = time.monotonic()
    evidence = audit.read(s, outputs, None if all_runs else {run_id or ""})
    results = audit.verify_all(evidence, ring, _since_ms(since))
    took = time.monotonic() - t0
    if run_id is not None and not results:
        raise fail(f"no journal for run {run_id} in namespace {s.namespace}", 2)
    for r in results:
        if all_runs and r.ok:
            continue  # --all names only broken runs, then the totals
        _print(r)
    broken = sum(not r.ok for r in results)
    if all_runs:
        rate = len(results) / took if took > 0 else 0.0
        out.print(
            f"{len(results) - broken} of {len(results)} runs verified, {broken} broken; "
            f"{took:.2f}s ({rate:.0f} runs/s, reading included)",
            highlight=False,
        )
    raise typer.Exit(1 if broken else 0)


@audit_app.command()
def export(
    run_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the bundle (JSON).")],
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
) -> None:
    """Write a self-contained evidence bundle of one run: journal and outputs as written, and the public keyring."""
    s = settings(namespace)
    topics = Topics(s.namespace)
    outputs = sorted({topics.name(wf.output_topic) for wf in workflows(workflow)})
    evidence = audit.read(s, outputs, {run_id})
    if run_id not in evidence.journal:
        raise fail(f"no journal for run {run_id} in namespace {s.namespace}", 2)
    data = audit.bundle(run_id, evidence, _keyring(None))
    output.write_text(json.dumps(data, indent=1), encoding="utf-8")
    out.print(
        f"wrote {output}: {len(data['journal'])} journal records, {len(data['outputs'])} outputs", highlight=False
    )
