"""Dead letters of the caller's tenant: list, show, redrive (operators), through :mod:`streams.deadletters`.

A letter belongs to the tenant of its run; letters of no run (a record that
could not be decoded at all) belong to no tenant and are for the CLI. A
redrive is signed with the worker secret like ``durable dlq redrive`` and
records ``apikey:<key id>`` as who asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from connectors.gateway.auth import OPERATE, READ_LETTERS, Principal, require, tenant_of_run
from connectors.gateway.context import Gateway, caller, gateway
from connectors.gateway.models import DeadLetterList, DeadLetterSummary, RedriveAnswer
from connectors.gateway.problems import Problem, documented
from streams import authentication, deadletters

router = APIRouter(tags=["dead letters"])


def _letters(gw: Gateway) -> list[deadletters.Letter]:
    try:
        return deadletters.letters(gw.settings)
    except authentication.WorkerSecretError:
        raise Problem(503, "the gateway holds no worker secret; dead letters need it", type_="unavailable") from None


def _mine(entries: list[deadletters.Letter], tenant: str) -> list[deadletters.Letter]:
    return [e for e in entries if e.letter.run_id and tenant_of_run(e.letter.run_id) == tenant]


async def _own(gw: Gateway, who: Principal, letter_id: str) -> deadletters.Letter:
    entries = await run_in_threadpool(_letters, gw)
    found = next((e for e in _mine(entries, who.tenant) if e.letter.dead_letter_id == letter_id), None)
    if found is None:
        raise Problem(404, "no such dead letter", type_="not-found")
    return found


@router.get("/api/v1/deadletters", response_model=DeadLetterList, responses=documented(401, 403, 429, 503))
async def letters(request: Request, who: Annotated[Principal, Depends(caller)]) -> DeadLetterList:
    """The tenant's dead letters, oldest first, each with its status (open or redriven)."""
    require(who, READ_LETTERS, "reading dead letters")
    entries = await run_in_threadpool(_letters, gateway(request))
    return DeadLetterList(
        dead_letters=[
            DeadLetterSummary(
                dead_letter_id=e.letter.dead_letter_id,
                kind=e.letter.kind,
                run_id=e.letter.run_id,
                step=e.letter.step,
                error_type=e.letter.error_type,
                reason=e.letter.reason,
                at_ms=e.letter.at_ms,
                status=e.status,
            )
            for e in _mine(entries, who.tenant)
        ]
    )


@router.get(
    "/api/v1/deadletters/{letter_id:path}",
    responses={200: {"description": "the letter as `durable dlq show` prints it"}, **documented(401, 403, 404, 429, 503)},
)
async def letter(request: Request, letter_id: str, who: Annotated[Principal, Depends(caller)]) -> dict[str, Any]:
    """One dead letter: why, where from, every attempt with its traceback, the input (tokenised)."""
    require(who, READ_LETTERS, "reading dead letters")
    return deadletters.shown(await _own(gateway(request), who, letter_id))


@router.post(
    "/api/v1/deadletters/{letter_id:path}/redrive",
    status_code=202,
    response_model=RedriveAnswer,
    responses={200: {"model": RedriveAnswer, "description": "already redriven"}, **documented(401, 403, 404, 409, 429, 503)},
)
async def redrive(request: Request, letter_id: str, who: Annotated[Principal, Depends(caller)]) -> JSONResponse:
    """Redrive a letter (operators only); 202 once requested.

    A run's letter resumes its run at the dead-lettered step with a fresh budget, once the run has
    stopped; a letter an upper layer owns (a sink's ``delivery``) goes back to that owner, which
    re-queues the work.
    """
    require(who, OPERATE, "redriving")
    gw = gateway(request)
    found = await _own(gw, who, letter_id)
    try:
        check = await run_in_threadpool(deadletters.check_redrive, gw.settings, found, f"apikey:{who.key_id}")
    except deadletters.NotRedrivable as exc:
        raise Problem(409, str(exc), type_="not-redrivable") from None
    run_id = check.control.run_id
    url = f"/api/v1/runs/{run_id}"
    if check.already or found.redrive is not None:
        body = RedriveAnswer(dead_letter_id=letter_id, run_id=run_id, status="already redriven", status_url=url)
        return JSONResponse(body.model_dump(), status_code=200)
    if check.expired is not None:
        raise Problem(409, f"{check.expired}; it cannot be redriven", type_="not-redrivable")
    if not check.stopped:
        shown = check.status.value if check.status else "UNKNOWN"
        raise Problem(409, f"run {run_id} is {shown}; redrive it once it has stopped", type_="run-not-stopped")
    try:
        await run_in_threadpool(deadletters.request_redrives, gw.settings, [check.request])
    except authentication.WorkerSecretError:
        raise Problem(503, "the gateway holds no worker secret; redrives are signed with it", type_="unavailable") from None
    body = RedriveAnswer(dead_letter_id=letter_id, run_id=run_id, status="requested", status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})
