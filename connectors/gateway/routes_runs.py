"""Runs: the list, one run (state, timeline, decision), its trace, its live events (SSE), a replay report.

Everything is read through the code the CLI uses (:mod:`streams.runview`,
:mod:`streams.journal`, :mod:`streams.traces`, :mod:`processors.engine.replay`).
A run of another tenant is 404, as one that does not exist.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from connectors.gateway.auth import OPERATE, READ_RUNS, Principal, require, tenant_of_run
from connectors.gateway.context import Gateway, caller, gateway
from connectors.gateway.models import (
    AttemptVerdict,
    Gate,
    JournalEntry,
    ReplayReport,
    RunDetail,
    RunList,
    RunSummary,
    Span,
    TraceView,
)
from connectors.gateway.problems import Problem, documented
from connectors.gateway.trust import Verdict
from processors.engine.replay import NotReplayable, recorded_run, replay_run
from processors.engine.status import ENDINGS
from processors.models import client_from_env
from schemas.models import JournalEvent, RunStatus
from streams import traces
from streams.journal import run_journal
from streams.runview import RunView, list_runs, view

router = APIRouter(tags=["runs"])
KEEPALIVE_S = 15.0
STATUSES = tuple(s.value for s in RunStatus)


def _summary(run: RunView, verdict: Verdict | None) -> dict[str, Any]:
    """A run as listed; its output only if ``verdict`` says it may be served (None: no output, or unchecked)."""
    served = verdict is None or verdict.servable
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status_name,
        "started_at_ms": run.started_ms,
        "last_event_at_ms": run.last_ms,
        "output": run.output if served else None,
        "signature": verdict.shown() if verdict is not None else None,
    }


def entry(event: JournalEvent) -> JournalEntry:
    try:
        detail = json.loads(event.detail_json) if event.detail_json else None
    except ValueError:
        detail = None
    return JournalEntry(
        seq=event.seq, at_ms=event.at_ms, kind=event.kind.value, step=event.step, attempt=event.attempt, detail=detail
    )


async def own_run(gw: Gateway, who: Principal, run_id: str) -> RunView:
    """The caller's tenant's run, or 404 (another tenant's run is not said to exist)."""
    if tenant_of_run(run_id) != who.tenant:
        raise Problem(404, "no such run", type_="not-found")
    run = await run_in_threadpool(lambda: view(run_journal(gw.settings, run_id)))
    if run is None:
        raise Problem(404, "no such run", type_="not-found")
    return run


@router.get("/api/v1/runs", response_model=RunList, responses=documented(401, 403, 422, 429))
async def runs(
    request: Request,
    who: Annotated[Principal, Depends(caller)],
    status: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)}")] = None,
    since: Annotated[
        str | None,
        Query(description="ISO-8601 date-time with zone: runs started at or after", max_length=40,
              pattern=r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RunList:
    """The tenant's runs, newest first."""
    require(who, READ_RUNS, "reading runs")
    if status is not None and status not in STATUSES:
        raise Problem(422, f"status must be one of {', '.join(STATUSES)}", type_="invalid-query", field="status")
    since_ms = None
    if since is not None:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise Problem(422, "since is not an ISO-8601 date-time", type_="invalid-query", field="since") from None
        if moment.tzinfo is None:
            raise Problem(422, "since needs a time zone (e.g. Z)", type_="invalid-query", field="since")
        since_ms = int(moment.timestamp() * 1000)
    gw = gateway(request)
    found = await run_in_threadpool(list_runs, gw.settings, status, since_ms, 1_000_000)
    mine = [r for r in found if tenant_of_run(r.run_id) == who.tenant][:limit]
    verdicts = await run_in_threadpool(gw.decisions.verdicts, {r.run_id for r in mine if r.output is not None})
    return RunList(runs=[RunSummary(**_summary(r, verdicts.get(r.run_id))) for r in mine])


@router.get("/api/v1/runs/{run_id}", response_model=RunDetail, responses=documented(401, 403, 404, 429))
async def run(request: Request, run_id: str, who: Annotated[Principal, Depends(caller)]) -> RunDetail:
    """A run's state (ACCEPTED until a worker starts it), its step timeline and its decision."""
    require(who, READ_RUNS, "reading runs")
    gw = gateway(request)
    try:
        found = await own_run(gw, who, run_id)
    except Problem:
        # Accepted here, not yet started by a worker: the status URL of a 202 answers from the first moment.
        at = gw.idempotency.accepted_at(run_id) if gw.idempotency is not None else None
        if at is None or tenant_of_run(run_id) != who.tenant:
            raise
        return RunDetail(
            run_id=run_id, workflow=gw.wf.name, status="ACCEPTED", started_at_ms=at, last_event_at_ms=at, timeline=[]
        )
    _, verdict = await gw.decisions.guard(run_id, found.output)
    return RunDetail(**_summary(found, verdict), timeline=[entry(e) for e in found.events])


@router.get("/api/v1/runs/{run_id}/trace", response_model=TraceView, responses=documented(401, 403, 404, 429))
async def trace(request: Request, run_id: str, who: Annotated[Principal, Depends(caller)]) -> TraceView:
    """A run's spans with tokens, cost and eval marks, its totals against its budgets, and its output."""
    require(who, READ_RUNS, "reading traces")
    gw = gateway(request)
    await own_run(gw, who, run_id)
    loaded = await run_in_threadpool(traces.load, gw.settings, run_id, gw.wf)
    # The trace's output is read from the output topic; checked as the run's decision is, or withheld.
    output, verdict = await gw.decisions.guard(run_id, loaded.output)
    marks = traces.marks(loaded)  # what `durable trace` shows, computed by the same functions
    summed = traces.totals(loaded)
    spans = []
    for s in loaded.spans:
        attrs = traces.attributes(s)
        spans.append(
            Span(
                span_id=s.span_id,
                parent_span_id=s.parent_span_id,
                name=s.name,
                start_unix_nano=s.start_unix_nano,
                end_unix_nano=s.end_unix_nano,
                duration_ms=(s.end_unix_nano - s.start_unix_nano) / 1e6,
                status=s.status,
                tokens=traces.tokens_of(attrs),
                cost_usd=traces.cost_of(attrs),
                eval_passed=marks.get(s.name),
                attributes=attrs,
            )
        )
    ev = loaded.evaluation
    gates = ev.gates if ev is not None else ()
    return TraceView(
        run_id=run_id,
        trace_id=summed.root.trace_id if summed.root is not None else None,
        spans=spans,
        gates=[Gate(name=g.name, passed=g.passed, reason=g.reason, span=g.span) for g in gates],
        latency_ms=summed.latency_ms,
        latency_budget_ms=ev.latency_budget_ms if ev is not None else None,
        tokens=summed.tokens,
        cost_usd=summed.cost_usd,
        cost_budget_usd=ev.cost_budget_usd if ev is not None else None,
        output=output,
        summary=gw.wf.describe(output) if output is not None else None,
        signature=verdict.shown() if verdict is not None else None,
    )


def _sse(event: JournalEvent) -> bytes:
    data = entry(event).model_dump_json()
    return f"id: {event.seq}\nevent: {event.kind.value}\ndata: {data}\n\n".encode()


@router.get(
    "/api/v1/runs/{run_id}/events",
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "journal events"},
        **documented(401, 403, 404, 429),
    },
    response_class=StreamingResponse,
)
async def events(
    request: Request,
    run_id: str,
    who: Annotated[Principal, Depends(caller)],
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-sent events: the run's journal events in order (history first, then live); ends when the run does.

    Each event's ``id`` is its seq: a client reconnecting with ``Last-Event-ID`` gets only later ones.
    """
    require(who, READ_RUNS, "reading runs")
    gw = gateway(request)
    if tenant_of_run(run_id) != who.tenant:
        raise Problem(404, "no such run", type_="not-found")
    tail = gw.tail
    if tail is None:
        raise Problem(503, "the gateway's journal reader is not running", type_="unavailable", headers={"Retry-After": "1"})
    queue = tail.subscribe(run_id)  # before reading the history, so nothing falls between the two
    try:
        history = await run_in_threadpool(run_journal, gw.settings, run_id)
        known = gw.idempotency is not None and await run_in_threadpool(gw.idempotency.known, run_id)
    except BaseException:
        tail.unsubscribe(run_id, queue)
        raise
    if not history and not known:
        tail.unsubscribe(run_id, queue)
        raise Problem(404, "no such run", type_="not-found")
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

    async def stream() -> AsyncIterator[bytes]:
        last = after
        try:
            for event in history:
                if event.seq > last:
                    last = event.seq
                    yield _sse(event)
            if history and history[-1].kind in ENDINGS:
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event.seq <= last:
                    continue
                last = event.seq
                yield _sse(event)
                if event.kind in ENDINGS:
                    return
        finally:
            tail.unsubscribe(run_id, queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/api/v1/runs/{run_id}/replay", response_model=ReplayReport, responses=documented(401, 403, 404, 409, 429))
async def replay(request: Request, run_id: str, who: Annotated[Principal, Depends(caller)]) -> ReplayReport:
    """Re-execute the run's recorded attempts with the current code on recorded values; writes nothing."""
    require(who, OPERATE, "replaying a run")
    gw = gateway(request)
    found = await own_run(gw, who, run_id)
    recorded = recorded_run(found.events)
    if recorded.workflow != gw.wf.name:
        raise Problem(409, f"run of workflow {recorded.workflow}; this gateway serves {gw.wf.name}", type_="other-workflow")
    try:
        replayed = await replay_run(recorded, gw.wf, live=False, models=client_from_env(simulations=[gw.wf.simulation]))
    except NotReplayable as exc:
        raise Problem(409, str(exc), type_="not-replayable") from None
    verdicts = [
        AttemptVerdict(
            step=a.recorded.step,
            action=a.recorded.action,
            attempt=a.recorded.attempt,
            verdict=a.verdict,
            recorded_error=a.recorded.error,
            replayed_error={k: v for k, v in (a.error or {}).items() if k != "traceback"} or None,
            diff=a.diff,
        )
        for a in replayed.attempts
    ]
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    return ReplayReport(
        run_id=run_id,
        recorded_status=recorded.status,
        would_complete=replayed.would_complete,
        attempts=verdicts,
        not_finished=[s.label for s in replayed.skipped],
        result=replayed.result,
        counts=counts,
    )
