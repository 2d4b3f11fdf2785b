"""What every command shares: the consoles, the settings, the workflows, plain-text printing of user data."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from processors.engine.workflow import Workflow
from streams import discovery
from streams.config import Settings
from streams.kafka_config import KafkaConfigError, security_config
from streams.workflows import load_workflows

err = Console(stderr=True, soft_wrap=True)  # messages name ids and reasons: never folded mid-word
# Piped output (scripts, tests) gets whole lines, not a table folded to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 240)

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Topic namespace (default: $DURABLE_NAMESPACE or 'main').")
]
WorkflowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--workflow",
        help="Workflow to load, module:attribute (repeat; default: $DURABLE_WORKFLOWS, else the FNOL workflow).",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` (as text, never markup) in red on stderr; returns the exit to raise."""
    err.print(escape(message), style="red", highlight=False)
    return typer.Exit(code)


def settings(namespace: str | None, **extra: object) -> Settings:
    """The runtime settings from the environment, the broker found by :mod:`streams.discovery`."""
    try:
        bootstrap = discovery.bootstrap_servers()
    except discovery.NoBroker as exc:
        raise fail(str(exc), 2) from None
    try:
        security_config()  # checked here so a bad client file is one clear line, not a librdkafka trace
    except KafkaConfigError as exc:
        raise fail(f"Kafka client settings: {exc}", 2) from None
    return Settings.from_env(namespace=namespace, bootstrap_servers=bootstrap, **extra)


def workflows(specs: list[str] | None) -> list[Workflow]:
    """The workflows named by ``--workflow`` (or the settings' default)."""
    return load_workflows(specs)


def workflow_named(name: str, specs: list[str] | None) -> Workflow:
    """The loaded workflow called ``name`` (exit 2 saying which are loaded if none is)."""
    by_name = {wf.name: wf for wf in workflows(specs)}
    if name not in by_name:
        raise fail(f"no workflow {name!r} in {sorted(by_name)}: pass --workflow module:attribute", 2)
    return by_name[name]


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def iso_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"not an ISO-8601 date-time: {text!r}", 2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
