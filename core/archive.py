"""The event archive: every valid event, as Parquet files partitioned by event date.

The worker appends each batch's applied events before it commits the batch to Redis;
importers and ``replay --archive`` write to it directly. The trainer, the drift job's label
join and ``churnstream verify`` read it.

Layout under ``CHURN_ARCHIVE_DIR`` (``settings.archive_dir``)::

    <archive_dir>/date=YYYY-MM-DD/<source>-<digest>.parquet
    <archive_dir>/segments/<source>-<stamp>-<random>.open   a worker's current segment
    <archive_dir>/segments/<source>-<stamp>-<random>.seg    closed, waiting to be compacted

**Segments.** The worker's batches are small and frequent, so it does not write Parquet
in its hot path: :class:`SegmentLog` appends each batch as one length-prefixed msgpack
frame to an append-only segment file (a few microseconds per event), fsynced at most once
a second and when the segment closes. Every
``CHURN_ARCHIVE_COMPACT_SECONDS`` the worker closes its segment and
:meth:`EventArchive.compact` turns closed segments into the Parquet layout above (large
files) and deletes them. Readers read the Parquet files *and* the segments, so what they
see is complete up to the last committed batch at any moment. A torn last frame (a crash
mid-write) is ignored: its batch was not committed to Redis either and is written again.
A writer holds an exclusive ``flock`` on its ``.open`` segment; one whose lock is free
belongs to a dead worker and is compacted like a closed one.

``date`` is the UTC date of ``event_time``. One write of N events spanning D dates
creates D files. File names are derived from the written rows (``digest`` hashes their
event ids, and source positions when given), so rewriting the same batch after a crash
replaces the same file. Each file is written to a temporary name, fsynced and renamed:
readers see whole files only.

Columns: ``event_id`` (string), ``customer_id`` (string), ``type`` (string),
``event_time`` (timestamp, microseconds, UTC), ``topic`` (string: the Kafka topic, or the
importer's name), ``partition`` and ``offset`` (int64, ``-1`` when the event did not come
from Kafka) and ``event`` (binary: the event's JSON, as received).

**Delivery is at least once.** A batch archived just before a crash is archived again when
it is re-applied, possibly with different batch boundaries, so the same ``event_id`` may
appear in several files. Readers deduplicate by ``event_id`` (:meth:`EventArchive.frame`
and :meth:`EventArchive.read_events` do), which is safe because event ids are stable: the
same real-world event always carries the same id.

To move to a distributed engine, point Spark/Dask/DuckDB at ``<archive_dir>`` with hive
partitioning on ``date``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, NamedTuple

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from core.events import Event, decode_event, encode_event

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("type", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("topic", pa.string()),
        ("partition", pa.int64()),
        ("offset", pa.int64()),
        ("event", pa.binary()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
_TEMP_PREFIX = ".tmp-"
SEGMENTS = "segments"
OPEN_SUFFIX, CLOSED_SUFFIX = ".open", ".seg"
_FRAME_HEADER = struct.Struct("<I")  # payload length; the payload is msgpack columns
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(
    tuple[list[str], list[str], list[str], list[int], list[str], list[int], list[int], list[bytes]]
)


class ArchivedEvent(NamedTuple):
    """One event to archive: the decoded event, its JSON bytes and where it came from. A
    named tuple: the worker makes one per event, and a tuple costs a third of a frozen
    dataclass to build."""

    event: Event
    raw: bytes
    topic: str
    partition: int = -1
    offset: int = -1

    @classmethod
    def of(cls, event: Event, source: str) -> ArchivedEvent:
        """An event that did not come from Kafka (an importer, a replay file)."""
        return cls(event, encode_event(event), source)


class EventArchive:
    """Append-only Parquet archive of events (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- writing -------------------------------------------------------------------------

    def write(self, rows: Sequence[ArchivedEvent], source: str = "events") -> list[Path]:
        """Append ``rows``; return the files written (one per event date). ``source`` is
        a short name used in the file names (letters, digits, ``-`` and ``_``)."""
        if not rows:
            return []
        by_date: dict[date, list[ArchivedEvent]] = {}
        for row in rows:
            by_date.setdefault(row.event.event_time.astimezone(UTC).date(), []).append(row)
        return [self._write_file(day, group, source) for day, group in sorted(by_date.items())]

    def _write_file(self, day: date, rows: list[ArchivedEvent], source: str) -> Path:
        return self._write_table(day, _table_of(_columns_of(rows)), source)

    def _write_table(self, day: date, table: pa.Table, source: str) -> Path:
        digest = hashlib.blake2b(digest_size=10)
        for name in ("event_id", "topic", "partition", "offset"):
            digest.update(b"\x1e".join(str(v).encode() for v in table.column(name).to_pylist()))
        directory = self.root / f"date={day.isoformat()}"
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / f"{source}-{digest.hexdigest()}.parquet"
        temp = directory / f"{_TEMP_PREFIX}{final.name}.{secrets.token_hex(4)}"
        try:
            with open(temp, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return final

    # --- reading -------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every complete archive file, in date order."""
        if not self.root.is_dir():
            return []
        return sorted(
            path
            for path in self.root.glob("date=*/*.parquet")
            if not path.name.startswith(_TEMP_PREFIX)
        )

    def frame(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] = COLUMNS,
        deduplicate: bool = True,
    ) -> pa.Table:
        """The archived rows with ``start <= event_time < end`` (both optional, aware
        datetimes), one row per ``event_id`` (the first archived copy) unless
        ``deduplicate`` is false, sorted by (``event_time``, ``event_id``)."""
        files = [p for p in self.files() if _date_in_range(p, start, end)]
        wanted = list(dict.fromkeys([*columns, "event_id", "event_time"]))
        condition = None
        if start is not None:
            condition = ds.field("event_time") >= pa.scalar(start, pa.timestamp("us", "UTC"))
        if end is not None:
            before = ds.field("event_time") < pa.scalar(end, pa.timestamp("us", "UTC"))
            condition = before if condition is None else condition & before
        parts = []
        if files:
            dataset = ds.dataset([str(p) for p in files], schema=SCHEMA, format="parquet")
            parts.append(dataset.to_table(columns=wanted, filter=condition))
        for segment in self.segments():
            table = read_segment(segment).select(wanted)
            parts.append(table if condition is None else table.filter(condition))
        if not parts:
            return SCHEMA.empty_table().select(wanted)
        table = pa.concat_tables(parts)
        if deduplicate and table.num_rows:
            table = _first_per_event_id(table)
        table = table.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
        return table.select(list(dict.fromkeys(columns)))

    def read_events(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[Event]:
        """The archived events with ``start <= event_time < end``, each ``event_id`` once,
        in event-time order."""
        table = self.frame(start, end, columns=("event",))
        for chunk in table.column("event").chunks:
            for raw in chunk.to_pylist():
                yield decode_event(raw)

    def segments(self, closed_only: bool = False) -> list[Path]:
        """Segment files not compacted yet (``closed_only``: those no live writer holds)."""
        directory = self.root / SEGMENTS
        if not directory.is_dir():
            return []
        found = sorted(directory.glob(f"*{CLOSED_SUFFIX}"))
        opened = sorted(directory.glob(f"*{OPEN_SUFFIX}"))
        if closed_only:
            return found + [path for path in opened if not _is_locked(path)]
        return found + opened

    def compact(self) -> int:
        """Turn every closed segment (and every open one whose writer is gone) into Parquet
        files by event date, then delete it; return the number of events moved. Safe to run
        beside writers and readers, and to interrupt (readers deduplicate)."""
        moved = 0
        for segment in self.segments(closed_only=True):
            try:
                handle = open(segment, "rb")  # noqa: SIM115 - the lock lives as long as it
            except FileNotFoundError:
                continue  # another compactor took it
            with handle:
                try:  # one compactor per segment; a live writer's segment stays put
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                table = read_segment(segment)
                if table.num_rows:
                    days = pc.strftime(table.column("event_time"), format="%Y-%m-%d")
                    source = segment.name.split("-", 1)[0]
                    for day in pc.unique(days).to_pylist():
                        part = table.filter(pc.equal(days, day))
                        self._write_table(date.fromisoformat(day), part, source)
                    moved += table.num_rows
                segment.unlink(missing_ok=True)
        return moved

    def count(self) -> int:
        """Distinct archived events."""
        return int(self.frame(columns=("event_id",)).num_rows)


def _first_per_event_id(table: pa.Table) -> pa.Table:
    indices = pa.array(range(table.num_rows), pa.int64())
    with_index = table.append_column("__row", indices)
    first = with_index.group_by("event_id", use_threads=False).aggregate([("__row", "min")])
    return table.take(first.column("__row_min").combine_chunks().sort())


def _date_in_range(path: Path, start: datetime | None, end: datetime | None) -> bool:
    try:
        day = date.fromisoformat(path.parent.name.removeprefix("date="))
    except ValueError:
        return False
    if start is not None and day < start.astimezone(UTC).date():
        return False
    # ``end`` is exclusive: a file of day D can hold events before ``end`` if D <= end's date
    return not (end is not None and day > (end.astimezone(UTC) - timedelta(microseconds=1)).date())


# --- columns, tables, segments ---------------------------------------------------------------

_Columns = tuple[
    list[str], list[str], list[str], list[int], list[str], list[int], list[int], list[bytes]
]


def _columns_of(rows: Sequence[ArchivedEvent]) -> _Columns:
    """The rows as columns; ``event_time`` as integer microseconds since the epoch (UTC)."""
    return (
        [r.event.event_id for r in rows],
        [r.event.customer_id for r in rows],
        [r.event.type for r in rows],
        [round(r.event.event_time.timestamp() * 1_000_000) for r in rows],
        [r.topic for r in rows],
        [r.partition for r in rows],
        [r.offset for r in rows],
        [r.raw for r in rows],
    )


def _table_of(columns: _Columns) -> pa.Table:
    arrays = [
        pa.array(values, type=column.type) for values, column in zip(columns, SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def read_segment(path: Path) -> pa.Table:
    """A segment's events as a table (a torn last frame is ignored)."""
    frames: list[_Columns] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # compacted meanwhile: its rows are in Parquet now
        return SCHEMA.empty_table()
    at = 0
    while at + _FRAME_HEADER.size <= len(data):
        (length,) = _FRAME_HEADER.unpack_from(data, at)
        start, at = at + _FRAME_HEADER.size, at + _FRAME_HEADER.size + length
        if at > len(data):
            break  # torn: the batch was never committed
        frames.append(_DECODER.decode(data[start:at]))
    if not frames:
        return SCHEMA.empty_table()
    merged = tuple([v for frame in frames for v in frame[i]] for i in range(len(SCHEMA)))
    return _table_of(merged)  # type: ignore[arg-type]


def _is_locked(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return True  # renamed or compacted meanwhile: not ours to touch


class SegmentLog:
    """The worker's durable, cheap side of the archive: each :meth:`append` is one
    frame in the current segment; :meth:`rotate` closes it so :meth:`EventArchive.compact`
    can turn it into Parquet. Thread-safe (the batch thread appends, a timer rotates)."""

    def __init__(self, root: Path, source: str = "worker", fsync_seconds: float = 1.0) -> None:
        self.directory = Path(root) / SEGMENTS
        self.source = source
        self.fsync_seconds = fsync_seconds
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = None
        self._path: Path | None = None
        self._synced_at = 0.0

    def append(self, rows: Sequence[ArchivedEvent]) -> None:
        """Write one frame and hand it to the operating system before returning, so a
        crash of the process loses nothing; the file is fsynced at most every
        ``fsync_seconds`` (like Redis's ``appendfsync everysec``: a power cut may lose
        that last second, in Redis and here alike) and when the segment is closed."""
        if not rows:
            return
        payload = _ENCODER.encode(_columns_of(rows))
        with self._lock:
            handle = self._handle or self._open()
            handle.write(_FRAME_HEADER.pack(len(payload)) + payload)
            handle.flush()
            now = time.monotonic()
            if now - self._synced_at >= self.fsync_seconds:
                os.fsync(handle.fileno())
                self._synced_at = now

    def rotate(self) -> Path | None:
        """Close the current segment (if any) and return its closed path."""
        with self._lock:
            if self._handle is None or self._path is None:
                return None
            os.fsync(self._handle.fileno())
            closed = self._path.with_suffix(CLOSED_SUFFIX)
            os.rename(self._path, closed)
            self._handle.close()  # releases the flock
            self._handle = self._path = None
            return closed

    def close(self) -> None:
        self.rotate()

    def _open(self) -> IO[bytes]:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{self.source}-{stamp}-{secrets.token_hex(4)}{OPEN_SUFFIX}"
        self._path = self.directory / name
        handle = open(self._path, "ab")  # noqa: SIM115 - kept open across appends
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle
        return handle
