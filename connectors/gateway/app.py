"""The app factory: :func:`create_app` wires keys, limits, the routes, and (in its lifespan) the Kafka parts.

The Kafka parts (the input writer, the journal reader, the lag probe, the
idempotency record) start when the app starts and stop with it, so tests and
``durable gateway`` build the same app. Every answer is counted in
``/metrics`` by route template, never by raw path (run ids are not labels).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.console import mount_console
from connectors.gateway import problems
from connectors.gateway.backpressure import InputLag
from connectors.gateway.config import GatewayConfig
from connectors.gateway.context import Gateway
from connectors.gateway.idempotency import IdempotencyRecord
from connectors.gateway.keys import KeyStore
from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.producer import InputProducer
from connectors.gateway.ratelimit import TenantLimits
from connectors.gateway.routes_deadletters import router as letters_router
from connectors.gateway.routes_health import router as health_router
from connectors.gateway.routes_operator import router as operator_router
from connectors.gateway.routes_runs import router as runs_router
from connectors.gateway.routes_submit import router as submit_router
from connectors.gateway.trust import DecisionCheck, gateway_keyring
from processors.engine.workflow import Workflow
from streams.config import Settings
from streams.workflows import load_workflows

log = logging.getLogger(__name__)


class Measured:
    """ASGI middleware: each HTTP answer's status and latency, labelled by its route template."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "(unmatched)")
            self.metrics.record(path, scope.get("method", ""), status, (time.perf_counter() - started) * 1000)


def _openapi(app: FastAPI, wf: Workflow) -> dict[str, Any]:
    """FastAPI's document, plus the report's schema (the body is read raw) and problems as problem+json."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    if wf.name == "fnol":
        from processors.fnol.intake import FnolReport

        report = FnolReport.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(report.pop("$defs", {}))
        # The tenant comes from the key; the body may leave it out.
        report["required"] = [f for f in report.get("required", []) if f != "tenant_id"]
        schemas["FnolReport"] = report
    else:
        schemas["FnolReport"] = {"type": "object"}
    doc.setdefault("components", {})["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            if path.startswith("/api/"):
                op["security"] = [{"apiKey": []}]
            for code, response in op.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400 and path.startswith("/api/"):
                    # FastAPI's own 422 says HTTPValidationError; ours are all problems (problems.install).
                    response["content"] = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = doc
    return doc


def create_app(
    settings: Settings,
    config: GatewayConfig | None = None,
    workflows: list[Workflow] | None = None,
    *,
    kafka: bool = True,
) -> FastAPI:
    """The gateway for ``settings``' namespace. ``kafka=False`` leaves the Kafka parts out (OpenAPI export)."""
    config = config or GatewayConfig.from_env(settings.state_dir)
    loaded = workflows if workflows is not None else load_workflows(None)
    by_name = {wf.name: wf for wf in loaded}
    if config.workflow not in by_name:
        raise ValueError(f"no workflow {config.workflow!r} loaded ({sorted(by_name)})")
    wf = by_name[config.workflow]
    # Signing on and no public key to check decisions with: SigningKeyError, the gateway does not start.
    keyring = gateway_keyring() if kafka else None
    if kafka and keyring is None:
        log.warning("DURABLE_SIGNING=off: decisions are served unchecked, each marked unsigned")
    metrics = GatewayMetrics(lambda: gw.lag.last if gw.lag is not None else None)
    gw = Gateway(settings=settings, config=config, wf=wf, keys=KeyStore(config.keys_path), limits=TenantLimits(config),
                 metrics=metrics, decisions=DecisionCheck(settings, wf, metrics, keyring))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if kafka:
            gw.idempotency = IdempotencyRecord(config.idempotency_path)
            gw.producer = await loop.run_in_executor(None, InputProducer, settings, wf)
            gw.lag = InputLag(settings, gw.producer.topic)
            from connectors.gateway.tail import JournalTail

            gw.tail = JournalTail(settings, loop, gw.metrics.observe)
        try:
            yield
        finally:
            for part in (gw.tail, gw.producer, gw.lag, gw.idempotency):
                if part is not None:
                    await loop.run_in_executor(None, part.close)
            gw.metrics.close()

    app = FastAPI(
        title="durable gateway",
        version="1",
        description="FNOL reports in, runs, traces and dead letters out; per tenant, by API key.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: nothing served here needs the network.
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(problems.known_query)],
    )
    app.state.gateway = gw
    problems.install(app)
    for router in (submit_router, runs_router, operator_router, letters_router, health_router):
        app.include_router(router)
    mount_console(app)  # the web console at / (static files shipped in the package) and /api/v1/whoami
    app.openapi = lambda: _openapi(app, wf)  # type: ignore[method-assign]
    app.add_middleware(Measured, metrics=gw.metrics)
    return app
