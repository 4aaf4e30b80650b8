"""The event archive on a local directory: layout, round trip, de-duplication, ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.archive import ArchivedEvent, EventArchive
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
