"""``/healthz`` (the process answers), ``/readyz`` (broker reachable, topics there, parts running), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from connectors.gateway.context import Gateway, gateway
from connectors.gateway.metrics import CONTENT_TYPE
from connectors.gateway.models import Health
from streams.kafka import admin as kafka_admin
from streams.topics import Topics

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


def _checks(gw: Gateway) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        listed = kafka_admin(gw.settings).list_topics(timeout=3).topics
        checks["broker"] = "ok"
    except Exception as exc:
        return {"broker": f"unreachable: {type(exc).__name__}"}
    topics = Topics(gw.settings.namespace)
    for name in (topics.name(gw.wf.input_topic), topics.journal):
        checks[f"topic {name}"] = "ok" if name in listed else "missing"
    tail = gw.tail
    checks["journal reader"] = (
        "ok" if tail is not None and tail.started.is_set() and tail.failed is None else (tail.failed if tail and tail.failed else "starting")
    )
    checks["producer"] = "ok" if gw.producer is not None else "not running"
    return checks


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready: which check failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready to take runs: the broker answers, the input and journal topics exist, the reader and writer run."""
    checks = await run_in_threadpool(_checks, gateway(request))
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text: requests by route, method and status, their latency, the orchestrator's input lag."""
    return Response(gateway(request).metrics.text(), media_type=CONTENT_TYPE)
