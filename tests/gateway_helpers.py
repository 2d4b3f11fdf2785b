"""A live gateway for tests: the real app on uvicorn in a thread, on a free loopback port, over the test broker."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from connectors.gateway.app import create_app
from connectors.gateway.config import GatewayConfig
from connectors.gateway.keys import KeyStore, Role
from processors.fnol.intake import SAMPLES
from streams.config import Settings
from streams.workflows import load_workflows
from tests.conftest import wait_for

FNOL = "processors.fnol.workflow:FNOL"


def sample(n: int = 0, **changes: Any) -> dict[str, Any]:
    """Sample report ``n`` (0-based line of the FNOL samples) without its tenant (the key's is taken), fields replaced."""
    report: dict[str, Any] = json.loads(SAMPLES.read_text().splitlines()[n])
    del report["tenant_id"]
    report.update(changes)
    return report


class LiveGateway:
    """``with LiveGateway(settings) as gw:`` serves the gateway until the block ends; ``gw.url``, ``gw.key(...)``."""

    def __init__(self, settings: Settings, **config: Any) -> None:
        self.settings = settings
        self.config = replace(GatewayConfig.from_env(settings.state_dir), **config)
        self.app = create_app(settings, self.config, load_workflows([FNOL]))
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self.server.run, name="test-gateway", daemon=True)
        self.keys = KeyStore(self.config.keys_path)
        self.url = ""

    def __enter__(self) -> LiveGateway:
        self._thread.start()
        wait_for(lambda: self.server.started, 30, "the gateway to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200, 30, "the gateway to be ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(15)

    def key(self, tenant: str = "acme", role: Role = Role.OPERATOR) -> str:
        key, _ = self.keys.create(tenant, role)
        return key

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def state_dir(settings: Settings) -> Path:
    return settings.state_dir
