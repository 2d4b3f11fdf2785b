"""A user's own Faust agent (the README's, ``connectors/faust/example.py``) reads typed decisions off the topic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import Settings
from tests.conftest import wait_for
from tests.sink_helpers import ROOT, decision, write_decisions

pytestmark = pytest.mark.integration


def test_the_readme_agent_prints_each_decision_typed(settings: Settings, tmp_path: Path) -> None:
    decisions = [decision(f"fnol:acme:AGENT-{i}", 1, 1_795_820_000_000 + i) for i in range(5)]
    write_decisions(settings, [b"not a decision", *decisions])  # Faust logs and skips what its codec cannot read
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.faust.example", "worker", "--loglevel", "warn"],
            cwd=tmp_path,  # Faust keeps its data directory in the working directory
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "DURABLE_NAMESPACE": settings.namespace,
            },
        )
        try:

            def printed() -> list[str]:
                assert proc.poll() is None, f"the agent exited: {log.read_text(errors='replace')[-2000:]}"
                return [line for line in log.read_text(errors="replace").splitlines() if "decision fnol:" in line]

            lines = wait_for(lambda: printed() if len(printed()) >= 5 else None, 90, "the agent printing 5 decisions")
        finally:
            proc.kill()
            proc.wait(10)
    for d in decisions:
        assert any(f"decision {d.run_id} ROUTED {d.reserve}" in line for line in lines), (d.run_id, lines)
