"""What every importer shares: the data-quality report, the reject file, the events file.

An importer turns a user's file into canonical events (:mod:`core.events`). Rows it cannot
turn into events are never dropped silently: each is counted in :class:`ImportReport` under
a short reason code and, when a reject file is given, written to it with its line number
(:class:`RejectWriter`). A file that cannot be read at all, or whose format is not the one
expected, stops the import with :class:`ImportFormatError`, naming the file and what was
expected.

Conventions: event times are UTC; ``line`` is the 1-based line of the row in a text file
(the header of a CSV is line 1, so its first data row is line 2) or the 1-based row number
in a Parquet file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from core.events import Event, encode_event


class ImportFormatError(ValueError):
    """A file that cannot be imported at all: unreadable, or not in the expected format.

    The message names the file and says what was expected."""

    def __init__(self, path: str | Path, problem: str, expected: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        super().__init__(f"{self.path}: {problem}; expected {expected}")


@dataclass
class ImportReport:
    """The data-quality report of one import.

    ``rows_read`` counts input rows (lines of a JSON-lines file, data rows of a table);
    ``rejects`` counts rejected rows by reason code; ``events_by_type`` the events written;
    ``customers`` the distinct customers among the events; ``first_event`` / ``last_event``
    the event-time range (UTC). ``facts`` holds format-specific counts (e.g. invoices).
    """

    source: str
    format: str
    rows_read: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    customers: int = 0
    first_event: datetime | None = None
    last_event: datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def events_written(self) -> int:
        return sum(self.events_by_type.values())

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects.values())

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values (times as UTC ISO 8601 with ``Z``)."""

        def iso(when: datetime | None) -> str | None:
            return None if when is None else when.isoformat().replace("+00:00", "Z")

        return {
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "events_written": self.events_written,
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "rejects": dict(sorted(self.rejects.items())),
            "customers": self.customers,
            "first_event": iso(self.first_event),
            "last_event": iso(self.last_event),
            "facts": self.facts,
            "seconds": round(self.seconds, 3),
        }

    def summary_lines(self) -> list[str]:
        """The report as short aligned lines for a terminal."""
        lines = [
            f"source      {self.source} ({self.format})",
            f"rows read   {self.rows_read:,}",
            f"events      {self.events_written:,}"
            + (
                " (" + ", ".join(f"{n:,} {t}" for t, n in sorted(self.events_by_type.items())) + ")"
                if self.events_by_type
                else ""
            ),
            f"customers   {self.customers:,}",
        ]
        if self.first_event and self.last_event:
            lines.append(
                f"time span   {self.first_event:%Y-%m-%d %H:%M:%S} .. "
                f"{self.last_event:%Y-%m-%d %H:%M:%S} UTC"
            )
        lines.append(f"rejected    {self.rows_rejected:,} rows")
        lines.extend(f"  {reason:<24}{count:>10,}" for reason, count in self.rejects.most_common())
        if self.facts:
            lines.append("in the file")
        for name, value in self.facts.items():
            shown = f"{value:>10,}" if isinstance(value, int) else str(value)
            lines.append(f"  {name.replace('_', ' '):<24}{shown}")
        lines.append(f"took        {self.seconds:.1f} s")
        return lines


class RejectWriter:
    """Writes rejected rows as JSON lines: ``{"line", "reason", "detail", "record"}``.

    ``reason`` is the short code counted in the report, ``detail`` a sentence for people,
    ``record`` the row as it was read (values made JSON-safe). Without a path nothing is
    written (the report still counts every reject). Use as a context manager: the file is
    created at the first reject, or at a clean exit (empty), never by a run that failed
    before rejecting anything.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._handle: IO[bytes] | None = None
        self.written = 0

    def __enter__(self) -> RejectWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._open()  # a clean run leaves a reject file, empty when nothing was rejected
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _open(self) -> IO[bytes] | None:
        """The file, created on first use (so a run that fails early leaves none)."""
        if self._handle is None and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "wb")  # noqa: SIM115 - closed in __exit__
        return self._handle

    def write(self, line: int, reason: str, detail: str, record: Mapping[str, Any]) -> None:
        self.write_many([line], [reason], [detail], [record])

    def write_many(
        self,
        lines: Sequence[int],
        reasons: Sequence[str],
        details: Sequence[str],
        records: Iterable[Mapping[str, Any]],
    ) -> None:
        """Write many rejects at once (the fast path for vectorised importers)."""
        if self._open() is None:
            return
        encoded = [
            orjson.dumps(record, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            for record in records
        ]
        self.write_encoded(lines, reasons, details, encoded)

    def write_encoded(
        self,
        lines: Sequence[int],
        reasons: Sequence[str],
        details: Sequence[str],
        records: Sequence[str],
    ) -> None:
        """Like :meth:`write_many` with each record already encoded as a JSON object."""
        handle = self._open()
        if handle is None:
            return
        chunk = bytearray()
        for line, reason, detail, record in zip(lines, reasons, details, records, strict=True):
            head = orjson.dumps({"line": int(line), "reason": reason, "detail": detail})
            chunk += head[:-1] + b',"record":' + record.encode() + b"}\n"
            self.written += 1
        handle.write(chunk)


def _json_default(value: object) -> object:
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def json_safe(value: object) -> object:
    """A cell of an input table as a JSON value (NaN and missing as ``None``).

    >>> json_safe(float("nan")), json_safe(3.0), json_safe("x")
    (None, 3.0, 'x')
    """
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_events_jsonl(events: Iterable[Event], path: str | Path) -> int:
    """Write canonical events as JSON lines (``-`` for stdout); return how many."""
    import sys

    count = 0
    if str(path) == "-":
        out = sys.stdout.buffer
        for chunk in _chunks(events):
            out.write(chunk)
            count += chunk.count(b"\n")
        out.flush()
        return count
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:
        for chunk in _chunks(events):
            handle.write(chunk)
            count += chunk.count(b"\n")
    return count


def _chunks(events: Iterable[Event], size: int = 4096) -> Iterator[bytes]:
    buffer = bytearray()
    n = 0
    for event in events:
        buffer += encode_event(event)
        buffer += b"\n"
        n += 1
        if n == size:
            yield bytes(buffer)
            buffer.clear()
            n = 0
    if buffer:
        yield bytes(buffer)


def report_json(report: ImportReport) -> str:
    """The report as one JSON object (for ``--json``)."""
    return json.dumps(report.to_dict(), sort_keys=True)
