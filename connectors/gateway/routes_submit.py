"""``POST /api/v1/agent/run``: an FNOL report in, through the same intake as ``durable produce``.

Order of judgement: key (401), role (403), rate (429), body shape (415,
413, 422), tenant named in the body (403), the workflow's intake (422 naming
the field), the idempotency record (409), backpressure (503); then the input
is produced and acknowledged, and the answer is 202, or 200 with the
decision when ``Prefer: wait=N`` and the run ends within N seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from connectors.gateway.auth import SUBMIT, Principal, require
from connectors.gateway.body import read_json_object
from connectors.gateway.context import Gateway, caller, gateway
from connectors.gateway.idempotency import Claimed, IdempotencyRecord
from connectors.gateway.models import RunAccepted, RunDecided
from connectors.gateway.problems import Problem, documented
from connectors.gateway.producer import InputProducer
from processors.engine.canonical import canonical_json
from processors.engine.errors import InputRejected
from processors.engine.inputs import accept
from processors.engine.status import AT_REST
from schemas.models import JournalEvent
from streams.journal import run_journal
from streams.runview import RunView, output_of, view

router = APIRouter(tags=["runs"])
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def prefer_wait(prefer: str | None, cap: float) -> float | None:
    """Seconds to wait from ``Prefer: wait=N`` (RFC 7240), at most ``cap``; None if not asked."""
    match = PREFER_WAIT.search(prefer or "")
    if match is None:
        return None
    return min(float(match.group(1)), cap)


def urls(run_id: str) -> dict[str, str]:
    return {"status_url": f"/api/v1/runs/{run_id}", "events_url": f"/api/v1/runs/{run_id}/events"}


async def answer(
    gw: Gateway, run_id: str, duplicate: bool, ended: JournalEvent | RunView | None, waited: float | None
) -> JSONResponse:
    headers = {"Location": f"/api/v1/runs/{run_id}"}
    if waited is not None:
        headers["Preference-Applied"] = f"wait={waited:g}"
    if ended is None:
        body: RunAccepted = RunAccepted(
            run_id=run_id, status="ACCEPTED", duplicate=duplicate, **urls(run_id)
        )
        return JSONResponse(body.model_dump(), status_code=202, headers=headers)
    if isinstance(ended, RunView):
        status, output = ended.status_name, ended.output
    else:
        status, output = AT_REST[ended.kind].value, output_of(ended)
    output, verdict = await gw.decisions.guard(run_id, output)  # served only once its signature verified
    decided = RunDecided(
        run_id=run_id, status=status, duplicate=duplicate, output=output,
        signature=verdict.shown() if verdict is not None else None, **urls(run_id),
    )
    return JSONResponse(decided.model_dump(), status_code=200, headers=headers)


async def _until_at_rest(queue: asyncio.Queue[JournalEvent]) -> JournalEvent:
    """The run's next ending, or its pause: a paused run's decision (e.g. on hold) is the answer too."""
    while True:
        event = await queue.get()
        if event.kind in AT_REST:
            return event


REPORT_SCHEMA_REF = {"$ref": "#/components/schemas/FnolReport"}


@router.post(
    "/api/v1/agent/run",
    status_code=202,
    response_model=RunAccepted,
    summary="Submit an FNOL report",
    responses={
        200: {"model": RunDecided, "description": "The run ended (or paused) within the wait asked for"},
        **documented(401, 403, 409, 413, 415, 422, 429, 503),
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": REPORT_SCHEMA_REF}}}},
)
async def submit(
    request: Request,
    who: Annotated[Principal, Depends(caller)],
    prefer: Annotated[str | None, Header(description="wait=N (N <= 10): answer 200 with the decision if it comes within N s")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255, pattern=r"^[\x21-\x7e]+$")] = None,
) -> JSONResponse:
    """Validate and tokenise the report (the intake of ``durable produce``), produce it, answer 202 (or 200).

    The tenant is the key's: a ``tenant_id`` in the body must be it (403 otherwise) and may be left out.
    The same claim again is the same run; the same claim with another body is 409.
    """
    gw = gateway(request)
    require(who, SUBMIT, "submitting a run")
    data = await read_json_object(request, gw.config.max_body_bytes)
    named = data.get("tenant_id")
    if named is None:
        data["tenant_id"] = who.tenant
    elif isinstance(named, str) and named != who.tenant:
        raise Problem(403, "the body names another tenant than the key's", type_="wrong-tenant")
    try:
        item = accept(gw.wf, data)
    except InputRejected as exc:
        raise Problem(422, exc.reason, type_="invalid-input", field=exc.field or "(body)") from None
    wait_s = prefer_wait(prefer, gw.config.max_wait_s)
    fingerprint = hashlib.sha256(canonical_json(item.record).encode()).hexdigest()
    record = running(gw.idempotency, "idempotency record")
    producer = running(gw.producer, "producer")
    tail = running(gw.tail, "journal reader")
    if idempotency_key is not None:
        used_for, used_with = await run_in_threadpool(record.key, who.tenant, idempotency_key, item.run_id, fingerprint)
        if (used_for, used_with) != (item.run_id, fingerprint):
            raise Problem(
                422, "this Idempotency-Key was used with another request body", type_="idempotency-key-reused",
                field="Idempotency-Key",
            )
    claim = record.claim(item.run_id, fingerprint)  # tens of microseconds (no fsync): not worth a thread hop
    if claim.outcome is Claimed.CONFLICT:
        raise Problem(
            409, "this claim was submitted before with other content", type_="claim-conflict", run_id=item.run_id
        )
    queue = tail.subscribe(item.run_id) if wait_s is not None else None
    try:
        duplicate = claim.outcome is Claimed.SAME and claim.acked
        if duplicate:
            run = await run_in_threadpool(lambda: view(run_journal(gw.settings, item.run_id)))
            if run is not None and run.at_rest:
                return await answer(gw, item.run_id, True, run, wait_s)
        else:
            await _produce(gw, record, producer, item, claim.outcome is Claimed.NEW)
        gw.metrics.accepted.add(1)
        ended: JournalEvent | None = None
        if queue is not None and wait_s is not None and wait_s > 0:
            try:
                ended = await asyncio.wait_for(_until_at_rest(queue), wait_s)
            except TimeoutError:
                ended = None
        return await answer(gw, item.run_id, duplicate, ended, wait_s)
    finally:
        if queue is not None:
            tail.unsubscribe(item.run_id, queue)


def running(part: Any, what: str) -> Any:
    if part is None:
        raise Problem(503, f"the gateway's {what} is not running", type_="unavailable", headers={"Retry-After": "1"})
    return part


async def _produce(gw: Gateway, record: IdempotencyRecord, producer: InputProducer, item: Any, new: bool) -> None:
    lag = gw.lag.last if gw.lag is not None else None
    if new and lag is not None and lag > gw.config.max_input_lag:
        await run_in_threadpool(record.forget, item.run_id)
        wait = max(1, math.ceil(lag / 1000))
        raise Problem(
            503,
            f"the engine is {lag} inputs behind (threshold {gw.config.max_input_lag}); retry later",
            type_="backpressure",
            headers={"Retry-After": str(wait)},
        )
    try:
        await producer.send(item)
    except Exception:
        await run_in_threadpool(record.forget, item.run_id)
        raise Problem(
            503, "the broker did not acknowledge the input; nothing was kept", type_="unavailable",
            headers={"Retry-After": "2"},
        ) from None
    record.acked(item.run_id)

