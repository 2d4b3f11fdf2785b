"""A workflow of the user's own (the README's "Write your own workflow" example) runs through every command.

The files are taken from the README as written, into a scratch directory,
and driven only through the ``durable`` command line: worker, produce,
consume, status, trace, dlq, replay. Every process reports the modules it
imported: none of FNOL's may be among them, which proves the runtime needs
nothing from the FNOL workload.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from streams.config import Settings
from tests.conftest import ROOT, wait_for

# Runs the `durable` CLI and, at exit, names every FNOL module the process imported.
CLI = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('FNOL-MODULES:', sorted(m for m in sys.modules if 'fnol' in m), file=sys.stderr))\n"
    "sys.argv[0] = 'durable'\n"
    "from streams.cli import main\n"
    "main()\n"
)
FLOW = ("--workflow", "trips.flow:FLOW")


def readme_files() -> dict[str, str]:
    """The example's files: each README code block right after a line naming a `trips/...` path."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Write your own workflow") :]
    found = dict(re.findall(r"^`(trips/[\w.]+)`:\n\n```\w*\n(.*?)^```", section, flags=re.M | re.S))
    assert set(found) == {"trips/flow.py", "trips/trip_requested.avsc", "trips/trip_booked.avsc"}, sorted(found)
    return found


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURABLE_NAMESPACE": settings.namespace,
        "DURABLE_STATE_DIR": str(settings.state_dir),
        "DURABLE_PARTITIONS": str(settings.partitions),
        "PYTHONPATH": str(ROOT),
    }


def _no_fnol(stderr: str) -> None:
    line = next(line for line in stderr.splitlines() if line.startswith("FNOL-MODULES:"))
    assert line == "FNOL-MODULES: []", line


def test_the_readme_workflow_runs_through_every_command(settings: Settings, tmp_path: Path) -> None:
    for name, body in readme_files().items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(body)

    def durable(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", CLI, *args],
            cwd=tmp_path,
            env=_env(settings),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        _no_fnol(done.stderr)
        return done

    log = open(tmp_path / "worker.log", "w+")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-c", CLI, "worker", "--name", "w", "--verbose", *FLOW],
        cwd=tmp_path,
        env=_env(settings),
        stdout=log,
        stderr=log,
    )
    try:
        trips = [
            {"trip_id": "T1", "flight": "LH123", "price": 240.0, "customer": "c-17"},
            {"trip_id": "T2", "flight": "LH124", "price": 180.0, "customer": "unknown"},
        ]
        produced = durable("produce", "trips", "-", *FLOW, stdin="\n".join(json.dumps(t) for t in trips))
        assert produced.returncode == 0, produced.stderr
        bad = durable("produce", "trips", "-", *FLOW, stdin='{"trip_id": "T3", "price": "free"}')
        assert bad.returncode == 1 and "line 1: not a example.trips.TripRequested record" in bad.stderr

        def consumed() -> dict[str, dict[str, str]] | None:
            done = durable("consume", "trips", *FLOW, "--timeout", "2")
            outputs = {o["trip_id"]: o for o in map(json.loads, done.stdout.splitlines())}
            return outputs if len(outputs) == 2 else None

        outputs = wait_for(consumed, 90, "both trips decided")
        assert outputs["T1"]["status"] == "BOOKED" and outputs["T1"]["detail"] == "TKT-T1"
        assert outputs["T2"]["status"] == "COMPENSATED" and "no such customer account" in outputs["T2"]["detail"]

        status = durable("status", "trip-T2")
        assert status.returncode == 0, status.stderr
        cells = [[c for c in line.split() if c not in "│┃"] for line in status.stdout.splitlines()]
        undo = [row[2:4] for row in cells if "COMPENSATION_SUCCEEDED" in row]
        assert undo == [["COMPENSATION_SUCCEEDED", "charge_card"], ["COMPENSATION_SUCCEEDED", "reserve_seat"]]
        assert "state: COMPENSATED" in status.stdout

        drawn = wait_for(
            lambda: (t := durable("trace", "trip-T1", *FLOW)).returncode == 0 and t, 30, "the trace of trip-T1"
        )
        assert all(step in drawn.stdout for step in ("orchestrator.run", "reserve_seat", "charge_card", "issue_ticket"))
        assert '"status":"BOOKED"' in drawn.stdout  # the output, described (here: the default, its JSON)

        listed = durable("dlq", "list")
        assert "trip-T2/issue_ticket/run/1" in listed.stdout
        shown = durable("dlq", "show", "trip-T2/issue_ticket/run/1", "--input")
        assert json.loads(shown.stdout)["input"]["customer"] == "unknown"

        replayed = durable("replay", "trip-T2", *FLOW)
        assert replayed.returncode == 3, replayed.stdout + replayed.stderr  # the failure, reproduced
        assert "failure reproduced" in replayed.stdout and "new failure" not in replayed.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        log.seek(0)
        _no_fnol(log.read())
        log.close()
