"""The ``durable`` command line: one module per command group, wired together here.

- :mod:`streams.cli.worker`: ``broker``, ``worker``
- :mod:`streams.cli.produce`: ``produce``, ``consume`` (a workflow's inputs in, its outputs out)
- :mod:`streams.cli.runs`: ``status``, ``runs export``
- :mod:`streams.cli.dlq`: ``dlq list | show | redrive``
- :mod:`streams.cli.replay`: ``replay``
- :mod:`streams.cli.offsets`: ``offsets reset``
- :mod:`streams.cli.trace`: ``trace``
- :mod:`streams.cli.demo`: ``demo``

Every command that touches a workflow takes ``--workflow module:attribute``
(default: ``$DURABLE_WORKFLOWS``, else the FNOL workflow).
"""

from __future__ import annotations

import sys

import typer

from streams.cli import demo, dlq, offsets, produce, replay, runs, trace, worker
from streams.cli.common import fail
from streams.workflows import WorkflowNotFound

app = typer.Typer(help="Durable execution on Kafka: sagas and retries that survive restarts.", no_args_is_help=True)
app.command()(worker.broker)
app.command()(worker.worker)
app.command()(produce.produce)
app.command()(produce.consume)
app.command()(runs.status)
app.add_typer(runs.runs_app, name="runs")
app.add_typer(dlq.dlq_app, name="dlq")
app.command()(replay.replay)
app.add_typer(offsets.offsets_app, name="offsets")
app.command("trace")(trace.trace)
app.command()(demo.demo)


def main() -> None:
    try:
        app()
    except WorkflowNotFound as exc:
        fail(str(exc))
        sys.exit(2)
