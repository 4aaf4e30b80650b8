"""Replay inputs: finding event files, reading them from a position, and a quick time scan.

Two formats hold canonical events:

* **JSON lines** (``.jsonl``, ``.ndjson``, ``.json``, optionally ``.gz``): one event per
  line, as written by ``churnstream simulate``, ``produce`` and the importers. A position
  is ``(byte offset of the next line, number of lines before it)``.
* **Parquet** in the event-archive layout (:mod:`core.archive`): a column ``event`` with
  each event's JSON (and an ``event_time`` column, used by the scan). A position is
  ``(row index, row index)``. The archive's closed segments (``segments/*.seg``, events
  the worker archived but not yet compacted into Parquet) are read the same way; a
  segment still being written (``.open``) is skipped.

Readers validate every event against the contract. An invalid line is handed to
``on_invalid`` with its 1-based line (or row) number and skipped. Readers yield
:data:`Item` tuples ordered by ``(event_time, source, offset)``, which is the replay order
(see :mod:`offline.replay.ordering`).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from core.events import Event, EventValidationError, EventValidator

if TYPE_CHECKING:  # pyarrow is imported where Parquet is read: the CLI starts without it
    import pyarrow as pa
    import pyarrow.parquet as pq

Format = Literal["jsonl", "parquet", "segment"]
Position = tuple[int, int]  # (offset, lines or rows before it)
# (event_time, source index, offset after this event, line number, event)
Item = tuple[datetime, int, int, int, Event]
InvalidHandler = Callable[[str, EventValidationError], object]

START: Position = (0, 0)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
SEGMENT_SUFFIX = ".seg"
# Files in an input folder that are never events: importer reject files, partial outputs.
_NOT_EVENTS = (".rejects.jsonl", ".partial", ".truth.csv")
_CLOCK_EVERY = 10_000  # re-read the clock for the future-time check every N events
_PARQUET_BATCH = 8192


class ReplayInputError(ValueError):
    """An input path that cannot be replayed: missing, unreadable or of an unknown format."""


@dataclass(frozen=True)
class InputFile:
    """One file to replay. ``size`` and ``mtime_ns`` identify its content for ``--resume``."""

    path: Path
    format: Format
    size: int
    mtime_ns: int

    @classmethod
    def at(cls, path: Path, format: Format | None = None) -> InputFile:
        kind = format or format_of(path)
        if kind is None:
            raise ReplayInputError(
                f"{path}: unknown format; expected JSON lines ({', '.join(JSONL_SUFFIXES)}, "
                f"optionally .gz) or Parquet in the event-archive layout (.parquet)"
            )
        try:
            stat = path.stat()
        except OSError as exc:
            raise ReplayInputError(f"cannot read {path}: {exc.strerror}") from None
        return cls(path, kind, stat.st_size, stat.st_mtime_ns)

    def identity(self) -> dict[str, Any]:
        return {
            "path": str(self.path.resolve()),
            "format": self.format,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }


def format_of(path: Path) -> Format | None:
    """The format a file name says, or ``None``.

    >>> format_of(Path("a.jsonl")), format_of(Path("b.json.gz")), format_of(Path("c.parquet"))
    ('jsonl', 'jsonl', 'parquet')
    >>> format_of(Path("truth.csv")) is None
    True
    """
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return "parquet"
    if path.name.endswith(SEGMENT_SUFFIX):
        return "segment"
    return None


def discover(paths: Sequence[Path]) -> tuple[list[InputFile], list[Path]]:
    """The event files named by ``paths`` (files, or folders searched recursively in name
    order) and the files skipped inside folders. Raises :class:`ReplayInputError` for a
    missing path, an unreadable or unknown file named directly, or no event file at all."""
    files: list[InputFile] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if hidden or child.name.endswith(_NOT_EVENTS) or format_of(child) is None:
                    skipped.append(child)
                else:
                    files.append(InputFile.at(child))
        elif path.exists():
            files.append(InputFile.at(path))
        else:
            raise ReplayInputError(f"{path} does not exist")
    if not files:
        where = ", ".join(str(p) for p in paths)
        raise ReplayInputError(f"no event files (.jsonl, .json, .ndjson, .parquet) in {where}")
    return files, skipped


# --- reading ---------------------------------------------------------------------------------


@contextmanager
def _open_jsonl(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzip (detected by its magic bytes)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ReplayInputError(f"cannot read {path}: {exc.strerror}") from None
    with raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def read_jsonl(
    file: InputFile,
    source: int,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    start: Position = START,
) -> Iterator[Item]:
    """Valid events of a JSON-lines file from ``start``, with their positions."""
    offset, number = start
    name = str(file.path)
    with _open_jsonl(file.path) as stream:
        if offset:
            stream.seek(offset)
        decode = validator.decode
        now = datetime.now(UTC)
        for line in stream:
            number += 1
            offset += len(line)
            if not number % _CLOCK_EVERY:
                now = datetime.now(UTC)
            try:
                event = decode(line, now)
            except EventValidationError as exc:
                if line.strip():
                    on_invalid(name, exc.at_line(number))
                continue
            yield (event.event_time, source, offset, number, event)


_NEVER = datetime.min.replace(tzinfo=UTC)


def _out_of_order(file: InputFile, number: int) -> ReplayInputError:
    return ReplayInputError(
        f"{file.path}: line {number} is earlier than the event before it, but the file was "
        "found in time order when the replay was planned: did it change meanwhile?"
    )


def parquet_event_column(file: InputFile) -> pq.ParquetFile:
    """Open a Parquet input, checking it has the archive's ``event`` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file.path)
    except (OSError, pa.ArrowException) as exc:
        raise ReplayInputError(f"cannot read {file.path} as Parquet: {exc}") from None
    names = parquet.schema_arrow.names
    if "event" not in names:
        raise ReplayInputError(
            f"{file.path}: expected Parquet in the event-archive layout (a column 'event' "
            f"with each event's JSON); found columns {', '.join(names)}"
        )
    return parquet


def _segment_batches(file: InputFile, column: str) -> Iterator[pa.RecordBatch]:
    from core.archive import read_segment

    table = read_segment(file.path)
    yield from table.select([column]).to_batches(_PARQUET_BATCH)


def _event_batches(file: InputFile, first_row: int) -> Iterator[tuple[int, list[Any]]]:
    """``(row index of the batch's first row, event values)`` from ``first_row`` on."""
    if file.format == "segment":
        row = 0
        for batch in _segment_batches(file, "event"):
            if row + batch.num_rows > first_row:
                yield row, batch.column(0).to_pylist()
            row += batch.num_rows
        return
    parquet = parquet_event_column(file)
    row = 0
    for group in range(parquet.num_row_groups):
        rows_in_group = parquet.metadata.row_group(group).num_rows
        if row + rows_in_group <= first_row:
            row += rows_in_group
            continue
        for batch in parquet.iter_batches(_PARQUET_BATCH, row_groups=[group], columns=["event"]):
            yield row, batch.column(0).to_pylist()
            row += batch.num_rows


def read_parquet(
    file: InputFile,
    source: int,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    start: Position = START,
) -> Iterator[Item]:
    """Valid events of an archive-layout Parquet file (or segment) from row ``start[0]``."""
    name = str(file.path)
    first_row = start[0]
    for row, values in _event_batches(file, first_row):
        now = datetime.now(UTC)
        for index in range(max(0, first_row - row), len(values)):
            value = values[index]
            number = row + index + 1
            try:
                if value is None:
                    raise EventValidationError("the event column is empty", "event")
                event = validator.decode(value, now)
            except EventValidationError as exc:
                on_invalid(name, exc.at_line(number))
                continue
            yield (event.event_time, source, number, number, event)


def read_events(
    file: InputFile,
    source: int,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    start: Position = START,
    ordered: bool = False,
) -> Iterator[Item]:
    """Valid events of ``file`` (any format) from ``start``, with their positions. With
    ``ordered``, an event earlier than the one before raises :class:`ReplayInputError`."""
    reader = read_jsonl if file.format == "jsonl" else read_parquet
    items = reader(file, source, validator, on_invalid, start)
    return _in_order(file, items) if ordered else items


def _in_order(file: InputFile, items: Iterator[Item]) -> Iterator[Item]:
    latest = _NEVER
    for item in items:
        if item[0] < latest:
            raise _out_of_order(file, item[3])
        latest = item[0]
        yield item


# --- the quick scan --------------------------------------------------------------------------


class _TimeOnly(msgspec.Struct):
    event_time: Annotated[datetime, msgspec.Meta(tz=True)]


_TIME_DECODER = msgspec.json.Decoder(_TimeOnly)


@dataclass(frozen=True)
class FileScan:
    """What a quick pass over a file found: records with a readable ``event_time``, lines
    without one (reported in full when the file is replayed), and whether the times never
    go backwards (``first_disorder`` is the line or row where they first do)."""

    events: int
    unreadable: int
    in_order: bool
    first_disorder: int | None
    first: datetime | None
    last: datetime | None


def scan_file(file: InputFile) -> FileScan:
    """Count a file's events and check their time order, reading only ``event_time``."""
    return _scan_jsonl(file) if file.format == "jsonl" else _scan_parquet(file)


def _scan_jsonl(file: InputFile) -> FileScan:
    events = unreadable = 0
    disorder: int | None = None
    first = latest = None
    decode = _TIME_DECODER.decode
    with _open_jsonl(file.path) as stream:
        for number, line in enumerate(stream, start=1):
            try:
                at = decode(line).event_time
            except msgspec.MsgspecError:
                if line.strip():
                    unreadable += 1
                continue
            events += 1
            if latest is None:
                first = latest = at
            elif at >= latest:
                latest = at
            elif disorder is None:
                disorder = number
    return FileScan(events, unreadable, disorder is None, disorder, _utc(first), _utc(latest))


def _scan_parquet(file: InputFile) -> FileScan:
    import pyarrow.compute as pc

    if file.format == "segment":
        batches: Iterator[pa.RecordBatch] = _segment_batches(file, "event_time")
        rows = None
    else:
        parquet = parquet_event_column(file)
        if "event_time" not in parquet.schema_arrow.names:  # no time column: read events
            return _scan_parquet_events(file, parquet)
        batches = parquet.iter_batches(65536, columns=["event_time"])
        rows = parquet.metadata.num_rows
    events = 0
    disorder: int | None = None
    first = previous = None
    for batch in batches:
        times = batch.column(0).drop_null()
        if not len(times):
            continue
        if previous is not None and disorder is None and times[0].as_py() < previous:
            disorder = events + 1
        if disorder is None and len(times) > 1:
            backwards = pc.less(times.slice(1), times.slice(0, len(times) - 1))
            if pc.any(backwards).as_py():
                disorder = events + 2 + pc.index(backwards, True).as_py()
        high = pc.max(times)
        first = first or times[0].as_py()
        previous = high.as_py() if previous is None else max(previous, high.as_py())
        events += len(times)
    unreadable = (rows - events) if rows is not None else 0
    return FileScan(events, unreadable, disorder is None, disorder, _utc(first), _utc(previous))


def _scan_parquet_events(file: InputFile, parquet: pq.ParquetFile) -> FileScan:
    events = unreadable = 0
    disorder: int | None = None
    first = previous = None
    number = 0
    for batch in parquet.iter_batches(_PARQUET_BATCH, columns=["event"]):
        for value in batch.column(0).to_pylist():
            number += 1
            try:
                at = _TIME_DECODER.decode(value).event_time
            except (msgspec.MsgspecError, TypeError):
                unreadable += 1
                continue
            events += 1
            if previous is None:
                first = at
            elif at < previous and disorder is None:
                disorder = number
            if previous is None or at > previous:
                previous = at
    return FileScan(events, unreadable, disorder is None, disorder, first, previous)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
