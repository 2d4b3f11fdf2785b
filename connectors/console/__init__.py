"""The web console: a single page served by the gateway at ``/``, talking only to the gateway's own API.

Every asset ships in this package (``static/``): no CDN, no font or script
fetched at run time. The page signs in with an API key (kept in the tab's
sessionStorage, sent as ``Authorization: Bearer``) and reads the same
``/api/v1`` routes as any client; it holds no data of its own. Responses carry
a strict Content-Security-Policy (scripts and styles from this origin only, no
inline script), so text from a run (already redacted at the edge) can never run
as code; the scripts also only ever set text, never HTML.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.staticfiles import PathLike
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/console"

# The page talks to its own origin only; nothing may frame it (clickjacking a redrive button).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    """Static files with the console's security headers."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file, as Starlette serves it, with the headers above."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def index() -> FileResponse:
    """The console's one page (views are drawn by its scripts from the URL's fragment)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


class WhoAmI(BaseModel):
    """The key the request carries, as the console shows it (never the key itself)."""

    key_id: str
    tenant: str
    role: str


async def whoami(request: Request) -> WhoAmI:
    """The tenant and role of the presented API key: the console shows operator actions only to operators."""
    # Imported here, not at the top: the gateway imports this module from its app factory.
    from connectors.gateway.context import caller

    who = await caller(request)  # 401 for no, a malformed or a revoked key; counts against the rate limit
    return WhoAmI(key_id=who.key_id, tenant=who.tenant, role=who.role.value)


def mount_console(app: FastAPI) -> None:
    """Serve the console on ``app``: the page at ``/``, its assets under ``/console/``, and ``/api/v1/whoami``.

    Calling it twice changes nothing (the gateway calls it; a test may too).
    """
    from connectors.gateway.problems import documented

    if any(getattr(route, "name", None) == "console" for route in app.routes):
        return
    app.mount(ASSETS_PATH, _Assets(directory=STATIC), name="console")
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False, response_class=FileResponse)
    app.add_api_route(
        "/api/v1/whoami",
        whoami,
        methods=["GET"],
        response_model=WhoAmI,
        responses=documented(401, 429),
        tags=["console"],
    )


__all__ = ["mount_console"]
