"""Who is asking: the API key (``Authorization: Bearer`` or ``X-API-Key``) names the tenant and the role.

The tenant comes from the key and from nowhere else. Roles: a ``submitter``
submits runs and follows them; a ``viewer`` reads runs, traces and dead
letters; an ``operator`` does both and may also redrive and replay. No key,
a malformed, unknown or revoked one: 401. A role that may not: 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from connectors.gateway.keys import KeyStore, Role
from connectors.gateway.problems import Problem

SUBMIT = frozenset({Role.SUBMITTER, Role.OPERATOR})
READ_RUNS = frozenset({Role.SUBMITTER, Role.VIEWER, Role.OPERATOR})
READ_LETTERS = frozenset({Role.VIEWER, Role.OPERATOR})
OPERATE = frozenset({Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    """The caller: its key's id, tenant and role."""

    key_id: str
    tenant: str
    role: Role


def presented(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return request.headers.get("x-api-key")


def authenticate(request: Request, store: KeyStore) -> Principal:
    """The principal of the request's key, or a 401 problem."""
    key = presented(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="durable"'}
    if not key:
        raise Problem(401, "an API key is required (Authorization: Bearer <key>)", type_="unauthorized", headers=challenge)
    record = store.check(key)
    if record is None:
        raise Problem(401, "the API key is malformed, unknown or revoked", type_="unauthorized", headers=challenge)
    return Principal(record.key_id, record.tenant, record.role)


def require(principal: Principal, allowed: frozenset[Role], what: str) -> None:
    """403 unless the principal's role is one of ``allowed``."""
    if principal.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise Problem(403, f"{what} needs the role {names}; this key is a {principal.role.value}", type_="forbidden")


def tenant_of_run(run_id: str) -> str | None:
    """The tenant a run belongs to: run ids of tenant workflows read ``<workflow>:<tenant>:<id>`` (FNOL's rule)."""
    parts = run_id.split(":", 2)
    return parts[1] if len(parts) == 3 else None
