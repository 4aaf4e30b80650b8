"""A summary of the event archive: files, segments, distinct events, customers, types and
the event-time range (UTC, ISO 8601 with ``Z``)."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from core.archive import EventArchive


def archive_stats(archive: EventArchive) -> dict[str, Any]:
    """Files, segments, distinct events, customers, types and the event-time range."""
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
