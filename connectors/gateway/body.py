"""A request body before the workflow's intake sees it: its size (413), its type (415), its JSON (422).

Only the shape of the HTTP request is judged here; what the object must
contain is the workflow's intake's to say (:mod:`processors.engine.inputs`),
as for ``durable produce``. Nothing of a body is logged or kept in an error.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from connectors.gateway.problems import Problem

JSON_TYPES = ("application/json",)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or the problem saying why not."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise Problem(415, "send the report as application/json", type_="unsupported-media-type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise Problem(413, f"the body is larger than {max_bytes} bytes", type_="too-large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # a body without a truthful length is cut off here, not read to its end
            raise Problem(413, f"the body is larger than {max_bytes} bytes", type_="too-large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(422, "the body is not UTF-8", type_="invalid-json", field="(body)") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Problem(422, "the JSON is nested too deeply", type_="invalid-json", field="(body)") from None
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise Problem(422, f"not JSON: {message}{where}", type_="invalid-json", field="(body)") from None
    if not isinstance(data, dict):
        raise Problem(422, f"expected a JSON object, got {type(data).__name__}", type_="invalid-json", field="(body)")
    return data
