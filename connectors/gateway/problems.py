"""Errors as RFC 9457 problem details (``application/problem+json``), for every status the gateway answers.

Routes raise :class:`Problem`; FastAPI's own errors (unknown path, wrong method,
a bad query parameter) are turned into problems too, and anything unexpected
becomes a 500 problem that says nothing of the request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemResponse(JSONResponse):
    """JSON escaped to ASCII: a detail may quote a field name from the request, lone surrogates included."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class ProblemDetail(BaseModel):
    """The body of every error answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    field: str | None = None  # for 422: which field of the input (dotted path)
    run_id: str | None = None  # for 409: the run the claim already is


class Problem(Exception):
    """An answer other than success: its status, a short problem type and a detail a client can act on."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = f"https://durable.dev/problems/{type_}" if type_ else "about:blank"
        self.headers = headers or {}
        self.extra = extra


def respond(
    status: int,
    detail: str | None,
    instance: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem response."""
    body = ProblemDetail(
        type=type_, title=TITLES.get(status, "Error"), status=status, detail=detail, instance=instance, **extra
    )
    return ProblemResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _field(loc: Any) -> str:
    parts = [str(x) for x in loc]
    return ".".join(parts[1:] if parts and parts[0] in ("query", "path", "header", "body") else parts)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return respond(exc.status, exc.detail, request.url.path, exc.type, exc.headers, **exc.extra)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = _field(first.get("loc", ()))
        # The message only: pydantic's error also carries the input, which may be personal data.
        return respond(422, f"{where}: {first.get('msg')}", request.url.path, field=where or None)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return respond(exc.status_code, str(exc.detail), request.url.path, headers=dict(exc.headers or {}))

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return respond(500, "unexpected error; nothing of the request was kept", request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers a route can give."""
    return {
        s: {"model": ProblemDetail, "description": TITLES.get(s, "Error"), "content": {MEDIA_TYPE: {}}}
        for s in statuses
    }


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """422 for a query parameter the route does not take (a typo like ``stauts=`` is not silently ignored)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        raise Problem(422, f"unknown query parameter {unknown[0]!r}", type_="invalid-query", field=unknown[0])
