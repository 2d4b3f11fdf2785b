"""`durable keys generate | public`: the Ed25519 keys that sign decisions (:mod:`streams.signing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from streams import signing
from streams.cli.common import fail, out

keys_app = typer.Typer(help="Decision-signing keys: generate one, print the public keyring.", no_args_is_help=True)


@keys_app.command()
def generate(
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Where to write it (default: $DURABLE_SIGNING_KEY, else signing.key by the state)"),
    ] = None,
) -> None:
    """Write a new private signing key (owner-only; never overwrites one); print its key id and public key."""
    target = path or signing.key_file()
    try:
        signer = signing.generate(target)
    except FileExistsError:
        raise fail(f"{target} exists: a signing key is never overwritten (move it away to rotate)") from None
    out.print(f"wrote {target} (mode 600)", highlight=False)
    out.print(f"key id: {signer.key_id}", highlight=False)
    out.print(signing.public_pem(signer.public), end="", highlight=False)


@keys_app.command()
def public(
    as_json: Annotated[
        bool, typer.Option("--json", help="A JWK set (each key with its PEM) instead of PEM blocks.")
    ] = False,
) -> None:
    """The public keyring downstream verifiers need: the signing key's and those of $DURABLE_VERIFY_KEYS."""
    try:
        ring = signing.keyring_from_env()
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    if not ring.keys:
        raise fail(f"no keys: no signing key at {signing.key_file()} and {signing.VERIFY_ENV} is empty", 2)
    if as_json:
        out.print(json.dumps(ring.to_json(), indent=2), highlight=False, markup=False)
        return
    for kid, key in ring.keys.items():
        out.print(f"# key id {kid}  JWK {json.dumps(signing.public_jwk(key))}", highlight=False, markup=False)
        out.print(signing.public_pem(key), end="", highlight=False, markup=False)
