"""``churnstream archive stats|compact``: look into the event archive and tidy it."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from churnstream.commands.shared import JsonOneOption

archive_app = typer.Typer(no_args_is_help=True)


@archive_app.command("stats")
def stats_command(
    json_output: JsonOneOption = False,
) -> None:
    """What the archive (CHURN_ARCHIVE_DIR) holds: events, customers, time range, files."""
    from core.archive import EventArchive
    from core.settings import get_settings
    from offline.archive_stats import archive_stats

    summary = archive_stats(EventArchive(get_settings().archive_dir))
    if json_output:
        typer.echo(json.dumps(summary))
        return
    console = Console()
    for key, value in summary.items():
        if key != "events_by_type":
            console.print(f"{key.replace('_', ' ')}: {value}", highlight=False)
    for kind, count in sorted(summary["events_by_type"].items()):
        console.print(f"  {kind}: {count:,}", highlight=False)


@archive_app.command("compact")
def compact_command() -> None:
    """Turn closed archive segments (and those of stopped workers) into Parquet files.

    Running workers do this on their own every CHURN_ARCHIVE_COMPACT_SECONDS; use this
    after workers stopped for good. Safe beside running workers and readers.
    """
    from core.archive import EventArchive
    from core.settings import get_settings

    moved = EventArchive(get_settings().archive_dir).compact()
    typer.echo(f"compacted {moved:,} events into Parquet")
