"""Drift reports on disk: one HTML page and one JSON document per run, and ``index.json``.

In ``CHURN_REPORTS_DIR``: ``<id>.html``, ``<id>.json`` and ``index.json``, whose format is
the API's contract (:mod:`core.report_index`).

Ids are the report's UTC creation time (``-2``, ``-3``… when two runs share a second).
Files are written first (each to a temporary name, then renamed), then ``index.json`` is
replaced atomically, under an exclusive lock (``.index.lock``) so concurrent writers do not
lose each other's entries. History is bounded: beyond ``keep`` reports, the oldest are
dropped from the index, then their files deleted.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.files import write_atomic
from core.report_index import INDEX_FILE, RESERVED_IDS, creation_key, read_index

LOCK_FILE = ".index.lock"


@dataclass(frozen=True)
class SavedReport:
    """Where a report went: its index entry and the absolute paths of its files."""

    entry: dict[str, Any]
    html_path: Path
    json_path: Path
    html_bytes: int


def report_id(created_at: datetime) -> str:
    """The id of a report created at ``created_at`` (UTC, to the second).

    >>> report_id(datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC))
    '20260301T120005Z'
    """
    return created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class ReportStore:
    """Writes reports into ``directory`` and keeps the newest ``keep`` of them."""

    def __init__(self, directory: Path, keep: int = 50) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.keep = keep

    def read_index(self) -> list[dict[str, Any]]:
        """The index's entries as stored (oldest first); [] before the first report.
        Raises ``ValueError`` naming the file when it is not a JSON array."""
        return read_index(self.directory)

    def save(
        self,
        created_at: datetime,
        write_html: Callable[[Path], object],
        document: dict[str, Any],
        entry: dict[str, Any],
    ) -> SavedReport:
        """Write one report: ``write_html(path)`` writes the page, ``document`` becomes the
        JSON file, ``entry`` (``drift_share``, ``dataset_drift`` and any extra keys) goes
        into the index with the id, time and file names."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._locked():
            entries = self.read_index()
            taken = {str(e.get("id")) for e in entries} | RESERVED_IDS
            base = report_id(created_at)
            rid, n = base, 1
            while rid in taken or (self.directory / f"{rid}.html").exists():
                n += 1
                rid = f"{base}-{n}"
            html_path = self.directory / f"{rid}.html"
            json_path = self.directory / f"{rid}.json"
            write_atomic(html_path, write_html)
            text = json.dumps({"id": rid, **document}, indent=1, default=_jsonable)
            write_atomic(json_path, lambda p: p.write_text(text, encoding="utf-8"))
            full = {
                "id": rid,
                "created_at": created_at.astimezone(UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                **entry,
                "html": html_path.name,
                "json": json_path.name,
            }
            entries.append(full)
            entries.sort(key=creation_key)
            dropped = entries[: max(len(entries) - self.keep, 0)]
            kept = entries[len(dropped) :]
            index_text = json.dumps(kept, indent=1, default=_jsonable)
            write_atomic(
                self.directory / INDEX_FILE,
                lambda p: p.write_text(index_text, encoding="utf-8"),
            )
            for old in dropped:
                self._delete_files(old)
        return SavedReport(full, html_path, json_path, html_path.stat().st_size)

    def _delete_files(self, entry: dict[str, Any]) -> None:
        root = self.directory.resolve()
        for key in ("html", "json"):
            name = entry.get(key)
            if not isinstance(name, str):
                continue
            path = (root / name).resolve()
            if path.is_relative_to(root) and path.parent == root:
                path.unlink(missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
