"""The event archive on a local directory: layout, round trip, de-duplication, ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.archive import ArchivedEvent, EventArchive, SegmentLog
from core.events import (
    Event,
    ItemReactionPayload,
    Like,
    Purchase,
    PurchasePayload,
    encode_event,
)

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def like(i: int, when: datetime, customer: str = "c1") -> Like:
    return Like(
        event_id=f"l{i}", customer_id=customer, event_time=when, payload=ItemReactionPayload()
    )


def purchase(i: int, when: datetime, customer: str = "c2") -> Purchase:
    payload = PurchasePayload(order_id=f"o{i}", amount=12.5, quantity=2)
    return Purchase(event_id=f"p{i}", customer_id=customer, event_time=when, payload=payload)


def rows(events: list[Event], source: str = "test") -> list[ArchivedEvent]:
    return [ArchivedEvent.of(e, source) for e in events]


def test_round_trip_partitions_by_event_date(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path)
    events: list[Event] = [
        like(1, T0),
        purchase(1, T0 + timedelta(hours=3)),  # next UTC day
        like(2, T0 + timedelta(hours=1, minutes=59)),
    ]
    written = archive.write(rows(events), source="import")
    assert sorted(p.parent.name for p in written) == ["date=2026-03-01", "date=2026-03-02"]
    assert all(p.name.startswith("import-") for p in written)
    back = list(archive.read_events())
    assert [e.event_id for e in back] == ["l1", "l2", "p1"]  # event-time order
    assert [encode_event(e) for e in back] == [encode_event(e) for e in sorted(
        events, key=lambda e: e.event_time)]  # fmt: skip
    assert archive.count() == 3


def test_duplicates_across_files_are_read_once(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path)
    archive.write([ArchivedEvent(like(1, T0), encode_event(like(1, T0)), "t", 0, 5)])
    # the same event re-archived after a crash, in a differently bounded batch
    archive.write(
        [
            ArchivedEvent(like(1, T0), encode_event(like(1, T0)), "t", 0, 5),
            ArchivedEvent(like(2, T0), encode_event(like(2, T0)), "t", 0, 6),
        ]
    )
    assert len(archive.files()) == 2
    assert archive.count() == 2
    assert archive.frame(deduplicate=False).num_rows == 3
    table = archive.frame(columns=("event_id", "partition", "offset"))
    assert table.to_pylist() == [
        {"event_id": "l1", "partition": 0, "offset": 5},
        {"event_id": "l2", "partition": 0, "offset": 6},
    ]


def test_rewriting_the_same_batch_replaces_its_file(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path)
    batch = rows([like(1, T0), like(2, T0)])
    first = archive.write(batch)
    second = archive.write(batch)
    assert first == second and archive.files() == first


def test_ranges_are_half_open_and_prune_files(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path)
    archive.write(rows([like(i, T0 + timedelta(days=i)) for i in range(5)]))
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=3)
    assert [e.event_id for e in archive.read_events(start, end)] == ["l1", "l2"]
    assert [e.event_id for e in archive.read_events(start=end)] == ["l3", "l4"]
    assert [e.event_id for e in archive.read_events(end=start)] == ["l0"]


def test_empty_or_missing_archive_reads_nothing(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path / "nowhere")
    assert archive.files() == [] and list(archive.read_events()) == []
    assert archive.frame().num_rows == 0 and archive.write([]) == []


def test_half_written_temporary_files_are_ignored(tmp_path: Path) -> None:
    archive = EventArchive(tmp_path)
    archive.write(rows([like(1, T0)]))
    (tmp_path / "date=2026-03-01" / ".tmp-worker-abc.parquet").write_bytes(b"PAR1 torn")
    assert archive.count() == 1


# --- the worker's segment log --------------------------------------------------------------


def kafka_rows(events: list[Event], partition: int = 0, first: int = 0) -> list[ArchivedEvent]:
    return [
        ArchivedEvent(e, encode_event(e), "t.customer-activity", partition, first + i)
        for i, e in enumerate(events)
    ]


def test_segments_are_read_before_and_after_compaction(tmp_path: Path) -> None:
    archive, log = EventArchive(tmp_path), SegmentLog(tmp_path)
    log.append(kafka_rows([like(1, T0), like(2, T0 + timedelta(days=1))]))
    log.append(kafka_rows([like(3, T0 + timedelta(days=1))], first=2))
    assert archive.files() == [] and len(archive.segments()) == 1
    before = archive.frame(columns=("event_id", "partition", "offset")).to_pylist()
    assert [r["event_id"] for r in before] == ["l1", "l2", "l3"]
    assert [r["offset"] for r in before] == [0, 1, 2]

    assert archive.compact() == 0  # the live writer's segment is left alone
    closed = log.rotate()
    assert closed is not None and closed.suffix == ".seg"
    assert archive.compact() == 3
    assert archive.segments() == []
    assert sorted(p.parent.name for p in archive.files()) == ["date=2026-03-01", "date=2026-03-02"]
    assert archive.frame(columns=("event_id", "partition", "offset")).to_pylist() == before

    log.append(kafka_rows([like(4, T0)], first=3))  # a new segment after rotation
    assert [e.event_id for e in archive.read_events()] == ["l1", "l4", "l2", "l3"]


def test_a_torn_last_frame_is_ignored(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append(kafka_rows([like(1, T0)]))
    log.append(kafka_rows([like(2, T0)], first=1))
    closed = log.rotate()
    assert closed is not None
    data = closed.read_bytes()
    closed.write_bytes(data[:-7])  # a crash in the middle of the second batch
    assert [e.event_id for e in EventArchive(tmp_path).read_events()] == ["l1"]


def test_a_dead_writers_open_segment_is_compacted(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append(kafka_rows([like(1, T0)]))
    assert log._handle is not None
    log._handle.close()  # the process died: its lock is gone, the file stays ".open"
    archive = EventArchive(tmp_path)
    assert [p.suffix for p in archive.segments()] == [".open"]
    assert archive.compact() == 1
    assert archive.segments() == [] and archive.count() == 1


def test_archive_stats_and_compact_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from churnstream.cli import app
    from core.settings import get_settings

    log = SegmentLog(tmp_path)
    log.append(kafka_rows([like(1, T0), purchase(1, T0 + timedelta(days=2))]))
    log.rotate()
    EventArchive(tmp_path).write(rows([like(1, T0), like(2, T0)]))  # l1 twice: counted once
    monkeypatch.setenv("CHURN_ARCHIVE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["archive", "stats", "--json"])
        assert result.exit_code == 0, result.output
        stats = json.loads(result.stdout)
        assert (stats["events"], stats["customers"], stats["segments"]) == (3, 2, 1)
        assert stats["events_by_type"] == {"like": 2, "purchase": 1}
        assert stats["first_event_time"] == "2026-03-01T22:00:00Z"
        result = CliRunner().invoke(app, ["archive", "compact"])
        assert result.exit_code == 0 and "compacted 2 events" in result.stdout
        assert EventArchive(tmp_path).segments() == [] and EventArchive(tmp_path).count() == 3
    finally:
        get_settings.cache_clear()
