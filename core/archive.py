"""The event archive: every valid event, as Parquet files partitioned by event date.

The worker appends each batch's applied events before it commits the batch to Redis;
importers and ``replay --archive`` write to it directly. The trainer, the drift job's label
join and ``churnstream verify`` read it.

Layout under ``CHURN_ARCHIVE_DIR`` (``settings.archive_dir``)::

    <archive_dir>/date=YYYY-MM-DD/<source>-<digest>.parquet

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

import hashlib
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
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


@dataclass(frozen=True)
class ArchivedEvent:
    """One event to archive: the decoded event, its JSON bytes and where it came from."""

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
        digest = hashlib.blake2b(digest_size=10)
        for row in rows:
            digest.update(f"{row.event.event_id}\x1f{row.topic}\x1f{row.partition}\x1f"
                          f"{row.offset}\x1e".encode())  # fmt: skip
        table = pa.table(
            {
                "event_id": [r.event.event_id for r in rows],
                "customer_id": [r.event.customer_id for r in rows],
                "type": [r.event.type for r in rows],
                "event_time": [r.event.event_time for r in rows],
                "topic": [r.topic for r in rows],
                "partition": [r.partition for r in rows],
                "offset": [r.offset for r in rows],
                "event": [r.raw for r in rows],
            },
            schema=SCHEMA,
        )
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
        if not files:
            return SCHEMA.empty_table().select(wanted)
        dataset = ds.dataset([str(p) for p in files], schema=SCHEMA, format="parquet")
        condition = None
        if start is not None:
            condition = ds.field("event_time") >= pa.scalar(start, pa.timestamp("us", "UTC"))
        if end is not None:
            before = ds.field("event_time") < pa.scalar(end, pa.timestamp("us", "UTC"))
            condition = before if condition is None else condition & before
        table = dataset.to_table(columns=wanted, filter=condition)
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
