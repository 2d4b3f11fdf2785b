"""An operator's word on a run over HTTP: compensate a PAUSED run, roll back a COMPLETED one (operators only).

The same checks and signed control as `durable runs compensate|rollback` (:mod:`streams.operator`); the request
records ``apikey:<key id>`` as who asked. Answers once the control is written (202), not once it is applied: the
run's page and its events show the compensation as it happens.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from connectors.gateway.auth import OPERATE, Principal, require
from connectors.gateway.body import read_json_object
from connectors.gateway.context import caller, gateway
from connectors.gateway.models import OperatorAnswer
from connectors.gateway.problems import Problem, documented
from connectors.gateway.routes_runs import own_run
from streams import authentication, operator

router = APIRouter(tags=["runs"])
MAX_BODY = 4096  # a reason of at most 500 characters, as JSON
MAX_REASON = 500
BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["reason"],
                    "additionalProperties": False,
                    "properties": {
                        "reason": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_REASON,
                            "description": "why: recorded in the run's journal and its next decision (personal data redacted)",
                        }
                    },
                }
            }
        },
    }
}


def _reason(data: dict[str, object]) -> str:
    """The body's reason, or a 422 problem naming the field (unknown fields refused)."""
    extra = sorted(set(data) - {"reason"})
    if extra:
        raise Problem(422, f'unknown field {extra[0]!r}: the body is {{"reason": "..."}}', type_="invalid", field=extra[0])
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise Problem(422, f"reason: a text of 1 to {MAX_REASON} characters saying why", type_="invalid", field="reason")
    return reason


async def _word(request: Request, run_id: str, who: Principal, action: operator.Action) -> JSONResponse:
    require(who, OPERATE, f"asking for a {action}")
    gw = gateway(request)
    reason = _reason(await read_json_object(request, MAX_BODY))
    run = await own_run(gw, who, run_id)
    asked = await run_in_threadpool(operator.check, gw.settings, run.events, action, reason, f"apikey:{who.key_id}")
    assert asked is not None  # own_run found its journal
    url = f"/api/v1/runs/{run_id}"
    if asked.already:
        body = OperatorAnswer(run_id=run_id, action=action, status=asked.word.already, status_url=url)
        return JSONResponse(body.model_dump(), status_code=200)
    if not asked.applies:
        raise Problem(409, asked.why_not, type_="run-not-in-that-state" if asked.expired is None else "run-expired")
    try:
        await run_in_threadpool(operator.send, gw.settings, asked)
    except authentication.WorkerSecretError:
        raise Problem(503, "the gateway holds no worker secret; operator requests are signed with it", type_="unavailable") from None
    body = OperatorAnswer(run_id=run_id, action=action, status="requested", status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


_RESPONSES = {
    200: {"model": OperatorAnswer, "description": "asked before: already applied"},
    **documented(401, 403, 404, 409, 413, 415, 422, 429, 503),
}


@router.post(
    "/api/v1/runs/{run_id}/compensate",
    status_code=202,
    response_model=OperatorAnswer,
    responses=_RESPONSES,
    openapi_extra=BODY,
)
async def compensate(request: Request, run_id: str, who: Annotated[Principal, Depends(caller)]) -> JSONResponse:
    """Undo a PAUSED run (operators only): its completed steps' compensations run newest first; body ``{"reason": ...}``.

    409 for a run that is not paused (a redrive of its dead letter resumes it instead) or whose state expired.
    """
    return await _word(request, run_id, who, "compensate")


@router.post(
    "/api/v1/runs/{run_id}/rollback",
    status_code=202,
    response_model=OperatorAnswer,
    responses=_RESPONSES,
    openapi_extra=BODY,
)
async def rollback(request: Request, run_id: str, who: Annotated[Principal, Depends(caller)]) -> JSONResponse:
    """Roll back a COMPLETED run (operators only): undone newest first, its decision retracted; body ``{"reason": ...}``.

    The run writes a new signed decision (RETRACTED, with the reason and what was undone). 409 for a run that is not
    completed or whose state expired.
    """
    return await _word(request, run_id, who, "rollback")
