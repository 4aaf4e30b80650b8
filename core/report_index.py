"""The drift-report index: what the monitor writes and the API serves.

In ``CHURN_REPORTS_DIR`` (default ``reports/drift``) the monitor (:mod:`monitoring.reports`)
writes each report's files and ``index.json``, a JSON array with one object per report,
oldest first::

    {"id": "20260301T000000Z",            unique, URL-safe; "latest" is reserved
     "created_at": "2026-03-01T00:00:00Z", ISO 8601 UTC
     "drift_share": 0.18,                  share of drifted columns, 0..1
     "dataset_drift": false,               Evidently's dataset-level verdict
     "html": "20260301T000000Z.html",      path relative to CHURN_REPORTS_DIR
     "json": "20260301T000000Z.json"}      path relative to CHURN_REPORTS_DIR

It replaces ``index.json`` atomically (write a temporary file, then rename) after the
files it names exist. Extra keys are passed through. The API
(:mod:`serving.routes.reports`) lists the entries newest first and serves an entry's HTML;
it never serves a path outside the directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.files import read_json_objects

INDEX_FILE = "index.json"
RESERVED_IDS = frozenset({"latest"})  # ids the API's routes use for something else


def creation_key(entry: dict[str, Any]) -> str:
    """An entry's sort key: its ``created_at`` (ISO 8601 UTC sorts as time does)."""
    return str(entry.get("created_at") or "")


def read_index(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``directory``'s index as stored (oldest first); [] before the first
    report. Raises ``ValueError`` naming the file when it is not a JSON array (and
    ``OSError`` when it cannot be read)."""
    return read_json_objects(Path(directory) / INDEX_FILE)


def newest_first(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries the API can serve (a string ``id`` and ``html``), newest first.

    >>> [e["id"] for e in newest_first([
    ...     {"id": "a", "html": "a.html", "created_at": "2026-03-01T00:00:00Z"},
    ...     {"id": "b", "html": "b.html", "created_at": "2026-03-02T00:00:00Z"},
    ...     {"id": "c", "created_at": "2026-03-03T00:00:00Z"}])]
    ['b', 'a']
    """
    served = [
        entry
        for entry in entries
        if isinstance(entry.get("id"), str) and isinstance(entry.get("html"), str)
    ]
    return sorted(served, key=creation_key, reverse=True)
