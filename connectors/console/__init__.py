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

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

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

    def file_response(self, *args: object, **kwargs: object) -> Response:  # type: ignore[override]
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(SECURITY_HEADERS)
        return response


def index() -> FileResponse:
    """The console's one page (views are drawn by its scripts from the URL's fragment)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def mount_console(app: FastAPI) -> None:
    """Serve the console on ``app``: the page at ``/``, its assets under ``/console/``."""
    app.mount(ASSETS_PATH, _Assets(directory=STATIC), name="console")
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False, response_class=FileResponse)


__all__ = ["mount_console"]
