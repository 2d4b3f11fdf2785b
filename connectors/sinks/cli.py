"""``durable sink ...``: run a downstream sink (a Faust worker) until stopped.

The ``durable`` CLI finds this group through the ``durable.commands`` entry
point group (pyproject.toml), so the runtime layer never imports connectors.
Faust and the sinks are imported when a sink command runs, not when the CLI starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli.common import NamespaceOpt, configure_logging, fail, out, settings

sink_app = typer.Typer(
    help="Downstream sinks: keep other systems in step with the decisions topic.", no_args_is_help=True
)


def _where(dsn: str) -> str:
    """The DSN without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


@sink_app.command("postgres")
def postgres(
    dsn: Annotated[
        str,
        typer.Option(
            "--dsn", envvar="DURABLE_SINK_DSN", help="PostgreSQL connection string, e.g. postgresql://user@host/db."
        ),
    ],
    namespace: NamespaceOpt = None,
    name: Annotated[
        str | None, typer.Option(help="This sink worker's name (default: host-pid), kept per decision.")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(help="Faust's web port (default: a free one; must differ per worker).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Keep a PostgreSQL database in step with the decisions topic: every decision once, each run's latest.

    Applies the schema migrations first, then runs until stopped. Several sinks of one namespace share the
    decisions topic's partitions (one consumer group).
    """
    import psycopg

    from connectors.sinks.postgres.migrate import MigrationError, migrate

    configure_logging(verbose)
    s = settings(namespace, worker_name=name)
    try:
        applied = migrate(dsn)
    except psycopg.OperationalError as exc:
        raise fail(f"cannot reach PostgreSQL at {_where(dsn)}: {exc}".strip(), 2) from None
    except (MigrationError, psycopg.Error) as exc:
        raise fail(f"migrating {_where(dsn)} failed: {exc}", 2) from None
    if applied:
        typer.echo(f"applied migrations {applied} to {_where(dsn)}", err=True)

    import faust

    from connectors.sinks.postgres.app import PostgresSink, decisions_topic
    from streams.topics import Topics, ensure_topics

    # Created here with the namespace's partition count: a topic auto-created by a consumer's metadata request
    # would get the broker's default count and break the engine's co-partitioning.
    ensure_topics(s, [decisions_topic(s), Topics(s.namespace).dead_letters])
    sink = PostgresSink(s, dsn, web_port)
    faust.Worker(sink.app, loglevel="info" if verbose else "warning", quiet=True).execute_from_commandline()


@sink_app.command("webhook")
def webhook(
    url: Annotated[str, typer.Option("--url", help="The endpoint each decision is POSTed to.")],
    secret_file: Annotated[Path, typer.Option("--secret-file", help="File holding the shared signing secret.")],
    namespace: NamespaceOpt = None,
    name: Annotated[str | None, typer.Option(help="This sink worker's name (default: host-pid).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each request.")] = 10.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts per decision before it is dead-lettered.")] = 8,
    backoff: Annotated[float, typer.Option(help="First retry delay in seconds (doubles up to --max-backoff).")] = 0.5,
    max_backoff: Annotated[float, typer.Option(help="Longest retry delay in seconds.")] = 60.0,
    delivered_retention: Annotated[
        float, typer.Option(help="Seconds a delivered decision's entry stays in the delivery table.")
    ] = 86_400.0,
    web_port: Annotated[int | None, typer.Option(help="Faust's web port (default: a free one).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """POST each decision as signed JSON (Durable-Signature, Idempotency-Key); retry failures, dead-letter the rest."""
    configure_logging(verbose)
    try:
        secret = secret_file.read_bytes().strip()
    except OSError as exc:
        raise fail(f"cannot read the secret file {secret_file}: {exc}", 2) from None
    if len(secret) < 16:
        raise fail(f"the secret in {secret_file} is shorter than 16 bytes", 2)
    s = settings(namespace, worker_name=name)

    import faust

    from connectors.sinks.webhook.app import DeliveryPolicy, WebhookSink
    from connectors.sinks.webhook.redrive import changelog_topic, redrive_topic
    from streams.topics import Topics, ensure_topics

    topics = Topics(s.namespace)
    # The redrive topic and the table's changelog are partitioned like the decisions topic: Faust assigns the
    # same partition of each to one worker, so the worker delivering a run also holds its state and redrives.
    changelog = changelog_topic(s.namespace)
    ensure_topics(
        s,
        [topics.name("decisions"), topics.dead_letters, redrive_topic(s.namespace), changelog],
        compacted=frozenset({changelog}),
    )
    policy = DeliveryPolicy(timeout, max_attempts, backoff, max_backoff, delivered_retention_s=delivered_retention)
    sink = WebhookSink(s, url, secret, policy, web_port)
    faust.Worker(sink.app, loglevel="info" if verbose else "warning", quiet=True).execute_from_commandline()


sinks_app = typer.Typer(help="The sinks' health: consumer groups, lag, dead letters.", no_args_is_help=True)


@sinks_app.command("status")
def sinks_status(namespace: NamespaceOpt = None) -> None:
    """Each sink's consumer group: its state, committed offset, end and lag per partition of the decisions topic."""
    from connectors.sinks.health import SINKS, status
    from streams import deadletters

    s = settings(namespace)
    letters = deadletters.letters(s)
    for sink in SINKS:
        st = status(s, sink)
        dead = sum(1 for entry in letters if entry.letter.reason.startswith(f"sink {sink}:"))
        out.print(f"{sink}  group {st.group}  {st.state}  lag {st.lag}  dead letters {dead}", markup=False)
        for p in st.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            out.print(f"  partition {p.partition}  committed {committed}  end {p.end}  lag {p.lag}", markup=False)
