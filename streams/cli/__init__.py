"""The ``durable`` command line: one module per command group, wired together here.

- :mod:`streams.cli.worker`: ``broker``, ``worker``
- :mod:`streams.cli.produce`: ``produce``, ``consume`` (a workflow's inputs in, its outputs out)
- :mod:`streams.cli.runs`: ``status``, ``runs export``
- :mod:`streams.cli.dlq`: ``dlq list | show | redrive``
- :mod:`streams.cli.replay`: ``replay``
- :mod:`streams.cli.offsets`: ``offsets reset``
- :mod:`streams.cli.trace`: ``trace``
- :mod:`streams.cli.demo`: ``demo``
- :mod:`streams.cli.keys`: ``keys generate | public``
- :mod:`streams.cli.audit`: ``audit verify | export``

Upper layers contribute command groups without this layer importing them:
each entry point of the ``durable.commands`` group (pyproject.toml) names a
``typer.Typer``, added under the entry point's name (``durable sink ...`` from
``connectors.sinks.cli``). One that fails to load is reported, and the other
commands still work.

Every command that touches a workflow takes ``--workflow module:attribute``
(default: ``$DURABLE_WORKFLOWS``, else the FNOL workflow).
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from streams.cli import audit, demo, dlq, keys, offsets, produce, replay, runs, trace, worker
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
app.add_typer(keys.keys_app, name="keys")
app.add_typer(audit.audit_app, name="audit")

COMMANDS_GROUP = "durable.commands"


def add_contributed_commands(cli: typer.Typer) -> None:
    """Add the command groups that installed packages declare under the ``durable.commands`` entry points."""
    for point in entry_points(group=COMMANDS_GROUP):
        try:
            group = point.load()
        except Exception as exc:  # a broken connector must not take the core commands down with it
            fail(f"commands {point.name!r} ({point.value}) not loaded: {type(exc).__name__}: {exc}")
            continue
        if isinstance(group, typer.Typer):
            cli.add_typer(group, name=point.name)
        else:
            fail(f"commands {point.name!r} ({point.value}) is not a typer.Typer; ignored")


add_contributed_commands(app)


def main() -> None:
    try:
        app()
    except WorkflowNotFound as exc:
        fail(str(exc))
        sys.exit(2)
