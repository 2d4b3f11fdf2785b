"""``durable gateway`` (serve the HTTP API) and ``durable apikeys create | list | revoke`` (its keys).

Found by ``durable`` through the ``durable.commands`` entry points. The key
commands touch only the key file (no broker): the CLI stays an operator's
tool with broker access, the keys are for HTTP clients. (``apikeys``, so a
later ``durable keys`` group for signing keys can live beside it.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from connectors.gateway.keys import KeyStore
from streams.cli.common import NamespaceOpt, WorkflowOpt, configure_logging, fail, out, settings

gateway_app = typer.Typer(help="The HTTP gateway: FNOL reports in, runs out, per tenant and role.")
apikeys_app = typer.Typer(help="The gateway's API keys: one per client, of one tenant and role.", no_args_is_help=True)


@gateway_app.callback(invoke_without_command=True)
def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    namespace: NamespaceOpt = None,
    workflow: WorkflowOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the gateway (its OpenAPI document at /openapi.json) until stopped."""
    import uvicorn

    from connectors.gateway.app import create_app
    from connectors.gateway.config import GatewayConfig, GatewayConfigError
    from processors import pii
    from streams import signing
    from streams.workflows import load_workflows

    configure_logging(verbose)
    try:
        pii.require_explicit_key()  # reports are tokenised here, as by `durable produce`: the same key rule
    except pii.PiiKeyError as exc:
        raise fail(f"refusing to serve: {exc}", 2) from None
    s = settings(namespace)
    try:
        config = GatewayConfig.from_env(s.state_dir)
        app = create_app(s, config, load_workflows(workflow))
    except (GatewayConfigError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    except signing.SigningKeyError as exc:
        raise fail(f"refusing to serve decisions it cannot verify: {exc}", 2) from None
    if not config.keys_path.exists():
        typer.echo(f"no API keys yet in {config.keys_path}: create one with `durable apikeys create`", err=True)
    # Access logs name method, path and status only: never a body, and run ids carry no personal data.
    uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning")


def _store() -> KeyStore:
    from connectors.gateway.config import GatewayConfig
    from streams.config import Settings

    return KeyStore(GatewayConfig.from_env(Settings.from_env().state_dir).keys_path)


@apikeys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    role: Annotated[str, typer.Option(help="submitter, viewer or operator.")],
    name: Annotated[str, typer.Option(help="A label for whom the key is for.")] = "",
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from connectors.gateway.keys import Role

    try:
        chosen = Role(role)
    except ValueError:
        raise fail(f"role must be one of {', '.join(r.value for r in Role)}", 2) from None
    try:
        key, record = _store().create(tenant, chosen, name)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(f"created key {record.key_id} for tenant {record.tenant} as {record.role.value}", err=True)
    print(key)


@apikeys_app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False) -> None:
    """Every key's id, tenant, role, creation and revocation (never a secret)."""
    from rich.table import Table

    records = _store().list()
    if as_json:
        for r in records:
            print(json.dumps({"key_id": r.key_id, "tenant": r.tenant, "role": r.role.value, "name": r.name,
                              "created_at": r.created_at, "revoked_at": r.revoked_at}))
        return
    table = Table(title="API keys")
    for col in ("id", "tenant", "role", "name", "created", "status"):
        table.add_column(col)

    def when(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    for r in records:
        status = "active" if r.active else f"revoked {when(r.revoked_at or 0)}"
        table.add_row(r.key_id, r.tenant, r.role.value, r.name, when(r.created_at), status)
    out.print(table)


@apikeys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see `durable apikeys list`).")]) -> None:
    """Revoke a key: a running gateway refuses it from its next request."""
    try:
        record = _store().revoke(key_id)
    except KeyError:
        raise fail(f"no key {key_id}", 1) from None
    typer.echo(f"revoked key {record.key_id} of tenant {record.tenant}", err=True)
