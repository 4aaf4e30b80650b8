"""``churnstream archive stats|compact``: look into the event archive and tidy it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from core.archive import EventArchive

archive_app = typer.Typer(no_args_is_help=True)


def archive_stats(archive: EventArchive) -> dict[str, Any]:
    """Files, segments, distinct events, customers, types and the event-time range."""
    import pyarrow.compute as pc

    table = archive.frame(columns=("event_id", "customer_id", "type", "event_time"))
    times = table.column("event_time")
    by_type = pc.value_counts(table.column("type")).to_pylist() if table.num_rows else []
    return {
        "archive_dir": str(archive.root),
        "parquet_files": len(archive.files()),
        "segments": len(archive.segments()),
        "events": table.num_rows,
        "customers": len(pc.unique(table.column("customer_id"))) if table.num_rows else 0,
        "first_event_time": _iso(pc.min(times).as_py()) if table.num_rows else None,
        "last_event_time": _iso(pc.max(times).as_py()) if table.num_rows else None,
        "events_by_type": {row["values"]: row["counts"] for row in by_type},
    }


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


@archive_app.command("stats")
def stats(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """What the archive (CHURN_ARCHIVE_DIR) holds: events, customers, time range, files."""
    from core.archive import EventArchive
    from core.settings import get_settings

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
def compact() -> None:
    """Turn closed archive segments (and those of stopped workers) into Parquet files.

    Running workers do this on their own every CHURN_ARCHIVE_COMPACT_SECONDS; use this
    after workers stopped for good. Safe beside running workers and readers.
    """
    from core.archive import EventArchive
    from core.settings import get_settings

    moved = EventArchive(get_settings().archive_dir).compact()
    typer.echo(f"compacted {moved:,} events into Parquet")
