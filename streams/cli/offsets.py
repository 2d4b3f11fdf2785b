"""`durable offsets reset`: move a consumer group's offsets to re-consume (or skip) records."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from streams import offsets
from streams.cli.common import NamespaceOpt, err, fail, iso_ms, out, settings
from streams.config import Settings
from streams.offsets import ResetSpec
from streams.topics import Topics

offsets_app = typer.Typer(help="Consumer-group offsets: reset them to replay (or skip) records.", no_args_is_help=True)


@offsets_app.command("reset")
def offsets_reset(
    group: Annotated[str, typer.Option(help="Consumer group id.")],
    topic: Annotated[list[str] | None, typer.Option(help="Topic (repeat; default: every topic the group committed).")] = None,
    namespace: NamespaceOpt = None,
    to_datetime: Annotated[str | None, typer.Option(help="First record at or after this ISO-8601 time.")] = None,
    to_offset: Annotated[int | None, typer.Option(help="This offset, in every partition.")] = None,
    shift_by: Annotated[int | None, typer.Option(help="Move by N (negative: back).")] = None,
    to_earliest: Annotated[bool, typer.Option(help="The first offset still in the log.")] = False,
    to_latest: Annotated[bool, typer.Option(help="The end of the log.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print current and new offsets; change nothing.")] = False,
    execute: Annotated[bool, typer.Option("--execute", help="Store the new offsets.")] = False,
    force: Annotated[bool, typer.Option(help="Execute even while the group has active members.")] = False,
    internal: Annotated[
        bool,
        typer.Option(
            "--internal", help="Allow the engine's own groups (<ns>.orchestrator, <ns>.executors) and its changelog."
        ),
    ] = False,
) -> None:
    """Move a consumer group's offsets, as kafka-consumer-groups --reset-offsets does.

    Offsets are clamped to the log. A topic name without the namespace is
    looked up in it too (`decisions` -> `<ns>.decisions`). Refuses to execute
    while the group is active (exit 1) unless --force. Refuses the engine's
    own groups and its changelog topic (exit 2) unless --internal, and then
    says what the reset loses.
    """
    if dry_run == execute:
        raise fail("choose --dry-run or --execute", 2)
    try:
        spec = ResetSpec(
            to_datetime_ms=iso_ms(to_datetime) if to_datetime else None,
            to_offset=to_offset,
            shift_by=shift_by,
            to_earliest=to_earliest,
            to_latest=to_latest,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    s = settings(namespace)
    names = [_topic_name(s, t) for t in topic] if topic else None
    if not internal and (reasons := offsets.internal_reasons(group, names or [])):
        raise _refuse_internal(reasons)
    try:
        planned = offsets.plan(s, group, names, spec)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    table = Table(title=f"group {group}: {'dry run' if dry_run else 'reset'}")
    for col in ("topic", "partition", "current", "new", "log start", "log end", "found by"):
        table.add_column(col)
    for r in planned:
        current = "-" if r.current is None else str(r.current)
        table.add_row(r.topic, str(r.partition), current, str(r.new), str(r.log_start), str(r.log_end), r.lookup)
    out.print(table)
    reasons = offsets.internal_reasons(group, sorted({r.topic for r in planned}))
    if reasons and not internal:
        raise _refuse_internal(reasons)
    if reasons:
        _say_what_is_lost(reasons, planned)
    if dry_run:
        out.print("dry run: nothing changed (run again with --execute)")
        return
    try:
        offsets.execute(s, group, planned, force=force)
    except offsets.GroupActive as exc:
        raise fail(str(exc)) from None
    out.print(f"offsets of group {group} reset on {len(planned)} partition(s)")


def _refuse_internal(reasons: list[str]) -> typer.Exit:
    return fail(
        "refused: this reset touches the engine's internals. "
        + "; ".join(reasons)
        + ". Pass --internal to do it anyway (with --dry-run first, to see what it loses).",
        2,
    )


def _say_what_is_lost(reasons: list[str], planned: list[offsets.PartitionReset]) -> None:
    err.print("--internal: " + "; ".join(reasons), style="yellow", markup=False, highlight=False)
    for topic, (skipped, reread) in sorted(offsets.skipped_and_reread(planned).items()):
        err.print(
            f"  {topic}: {skipped} record(s) skipped, never processed; {reread} record(s) read again",
            style="yellow",
            markup=False,
            highlight=False,
        )


def _topic_name(s: Settings, name: str) -> str:
    try:
        offsets.partitions_of(s, name)
        return name
    except ValueError:
        return Topics(s.namespace).name(name)
