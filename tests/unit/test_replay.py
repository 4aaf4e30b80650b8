"""Replay without a broker: inputs, the order guarantee, sorting, filters, resume bookkeeping.

The Kafka path is covered in tests/integration/test_replay.py; here events go to an
in-memory sink (or the Parquet archive), which exercises the same loop and checkpoints.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.archive import ArchivedEvent, EventArchive
from core.events import Event, EventValidator, encode_event
from offline.replay.checkpoint import Checkpoint, CheckpointError, plan_id
from offline.replay.engine import Checkpointing, InvalidLog, ReplayFilters, run_replay
from offline.replay.ordering import merged, plan_replay
from offline.replay.sources import (
    START,
    InputFile,
    ReplayInputError,
    discover,
    read_events,
    scan_file,
)
from offline.simulator import SimulationConfig, simulate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sim(customers: int = 20, days: int = 3, seed: int = 1) -> list[Event]:
    return list(simulate(SimulationConfig(customers=customers, days=days, seed=seed, start=T0)))


def write(path: Path, events: list[Event], compress: bool = False) -> Path:
    data = b"".join(encode_event(e) + b"\n" for e in events)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


class ListSink:
    """An in-memory destination with the sinks' interface."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flushes = 0

    def send_function(self):  # type: ignore[no-untyped-def]
        return self.events.append

    def flush(self) -> None:
        self.flushes += 1


def replay_all(files: list[InputFile], tmp_path: Path, **kwargs: object) -> list[Event]:
    invalid = InvalidLog()
    plan = plan_replay(files, tmp_path / "runs", EventValidator(), invalid, **kwargs)  # type: ignore[arg-type]
    sink = ListSink()
    run_replay(merged(plan.sources, [START] * len(plan.sources), EventValidator(), invalid), [sink])  # type: ignore[list-item]
    return sink.events


# --- inputs --------------------------------------------------------------------------------


def test_discover_reads_folders_in_name_order_and_skips_what_is_not_events(tmp_path: Path) -> None:
    events = sim(days=1)
    (tmp_path / "b").mkdir()
    write(tmp_path / "b" / "2.jsonl", events)
    write(tmp_path / "a.jsonl", events)
    write(tmp_path / "c.json.gz", events, compress=True)
    (tmp_path / "a.jsonl.rejects.jsonl").write_text("{}\n")
    (tmp_path / "events.jsonl.truth.csv").write_text("x\n")
    (tmp_path / ".hidden.jsonl").write_text("{}\n")
    files, skipped = discover([tmp_path])
    assert [f.path.name for f in files] == ["a.jsonl", "2.jsonl", "c.json.gz"]
    assert {p.name for p in skipped} == {"a.jsonl.rejects.jsonl", "events.jsonl.truth.csv", ".hidden.jsonl"}  # fmt: skip


def test_bad_paths_stop_with_a_message_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match=r"nope\.jsonl does not exist"):
        discover([tmp_path / "nope.jsonl"])
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ReplayInputError, match=r"data\.csv: unknown format; expected JSON lines"):
        discover([tmp_path / "data.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayInputError, match="no event files"):
        discover([tmp_path / "empty"])
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReplayInputError, match=r"cannot read .*bad\.parquet as Parquet"):
        scan_file(InputFile.at(tmp_path / "bad.parquet"))


def test_the_scan_counts_events_and_finds_where_time_goes_back(tmp_path: Path) -> None:
    events = sim(days=2)
    in_order = scan_file(InputFile.at(write(tmp_path / "a.jsonl", events)))
    assert (in_order.events, in_order.in_order, in_order.unreadable) == (len(events), True, 0)
    assert (in_order.first, in_order.last) == (events[0].event_time, events[-1].event_time)
    late = events[100]
    swapped = [*events[:50], late, *events[50:100], *events[101:]]
    lines = [encode_event(e) for e in swapped]
    lines.insert(10, b"{broken")
    (tmp_path / "b.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    scan = scan_file(InputFile.at(tmp_path / "b.jsonl"))
    assert scan.in_order is False and scan.unreadable == 1 and scan.events == len(events)
    assert (
        scan.first_disorder == 53
    )  # the line after the early-arriving event (1-based, +1 broken line)


@pytest.mark.parametrize("kind", ["jsonl", "gz", "parquet"])
def test_reading_from_a_position_gives_exactly_the_rest(tmp_path: Path, kind: str) -> None:
    events = sim(days=1)
    if kind == "parquet":
        EventArchive(tmp_path / "archive").write([ArchivedEvent.of(e, "t") for e in events])
        path = sorted((tmp_path / "archive").rglob("*.parquet"))[0]  # the first date's file
        day = events[0].event_time.date()
        events = [e for e in events if e.event_time.date() == day]
    else:
        path = write(
            tmp_path / ("e.jsonl.gz" if kind == "gz" else "e.jsonl"), events, compress=kind == "gz"
        )
    file = InputFile.at(path)
    invalid = InvalidLog()
    items = list(read_events(file, 0, EventValidator(), invalid))
    assert Counter(map(encode_event, (i[4] for i in items))) == Counter(map(encode_event, events))
    cut = len(items) // 3
    rest = list(read_events(file, 0, EventValidator(), invalid, (items[cut][2], items[cut][3])))
    assert [i[4] for i in rest] == [i[4] for i in items[cut + 1 :]]
    assert invalid.count == 0


def test_invalid_lines_are_reported_with_their_line_numbers_and_skipped(tmp_path: Path) -> None:
    events = sim(days=1)[:5]
    lines = [encode_event(e) for e in events]
    lines[1] = b'{"type": "play", "event_id": "x"}'
    lines.insert(3, b"")
    lines.insert(4, b"not json")
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    invalid = InvalidLog()
    got = [
        i[4] for i in read_events(InputFile.at(tmp_path / "e.jsonl"), 0, EventValidator(), invalid)
    ]
    assert got == [events[0], events[2], events[3], events[4]]
    assert invalid.by_code == Counter({"missing_field": 1, "invalid_json": 1})
    assert invalid.shown[0].startswith(f"{tmp_path / 'e.jsonl'}: line 2: field 'customer_id'")
    assert invalid.shown[1].startswith(f"{tmp_path / 'e.jsonl'}: line 5: not valid JSON")


# --- order ---------------------------------------------------------------------------------


def test_sorted_files_merge_in_time_order_with_ties_in_input_order(tmp_path: Path) -> None:
    events = sim(customers=30, days=3)
    parts: list[list[Event]] = [[], [], []]
    for event in events:
        parts[zlib.crc32(event.customer_id.encode()) % 3].append(event)
    files = [InputFile.at(write(tmp_path / f"p{i}.jsonl", part)) for i, part in enumerate(parts)]
    out = replay_all(files, tmp_path)
    assert Counter(encode_event(e) for e in out) == Counter(encode_event(e) for e in events)
    # The documented order: by time, then input file, then line.
    rank = {encode_event(e): (e.event_time, i, n) for i, part in enumerate(parts) for n, e in enumerate(part)}  # fmt: skip
    assert [encode_event(e) for e in out] == sorted(rank, key=rank.__getitem__)
    assert not (tmp_path / "runs").exists()  # sorted inputs need no spill


def test_unsorted_files_are_sorted_on_disk_in_bounded_chunks(tmp_path: Path) -> None:
    events = sim(customers=40, days=4, seed=3)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    sorted_part = events[::5]
    files = [
        InputFile.at(write(tmp_path / "shuffled.jsonl", shuffled)),
        InputFile.at(write(tmp_path / "sorted.jsonl", sorted_part)),
    ]
    invalid = InvalidLog()
    plan = plan_replay(
        files, tmp_path / "runs", EventValidator(), invalid, sort_buffer=300, fan_in=4
    )
    expected_runs = -(-len(shuffled) // 300)
    assert expected_runs > 4  # so the fan-in reduction ran too
    assert len(plan.sources) <= 4 and plan.sorted_inputs == [tmp_path / "shuffled.jsonl"]
    assert plan.total == len(shuffled) + len(sorted_part)
    sink = ListSink()
    run_replay(merged(plan.sources, [START] * len(plan.sources), EventValidator(), invalid), [sink])  # type: ignore[list-item]
    times = [e.event_time for e in sink.events]
    assert times == sorted(times)
    assert Counter(map(encode_event, sink.events)) == Counter(
        map(encode_event, shuffled + sorted_part)
    )
    # Each customer's events come in time order (the per-customer guarantee).
    per_customer: dict[str, list[datetime]] = {}
    for event in sink.events:
        per_customer.setdefault(event.customer_id, []).append(event.event_time)
    assert all(t == sorted(t) for t in per_customer.values())


def test_a_source_that_changes_order_after_planning_stops_the_replay(tmp_path: Path) -> None:
    events = sim(days=2)
    path = write(tmp_path / "a.jsonl", events)
    file = InputFile.at(path)
    write(path, events[:10] + events[20:30] + events[10:20])  # rewritten out of order
    with pytest.raises(ReplayInputError, match="line 21 is earlier than the event before it"):
        list(merged([file], [START], EventValidator(), InvalidLog()))


# --- the loop ------------------------------------------------------------------------------


def test_filters_select_by_time_and_customer(tmp_path: Path) -> None:
    events = sim(customers=10, days=3)
    file = InputFile.at(write(tmp_path / "e.jsonl", events))
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=2)
    who = frozenset({events[0].customer_id, events[-1].customer_id})
    sink = ListSink()
    stats = run_replay(
        merged([file], [START], EventValidator(), InvalidLog()),
        [sink],  # type: ignore[list-item]
        filters=ReplayFilters(start, end, who),
    )
    expected = [e for e in events if start <= e.event_time < end and e.customer_id in who]
    assert sink.events == expected and expected
    assert (stats.sent, stats.filtered, stats.read) == (
        len(expected),
        len(events) - len(expected),
        len(events),
    )


def checkpoint_for(files: list[InputFile], total: int) -> Checkpoint:
    return Checkpoint(plan="p", sources=[f.identity() for f in files], positions=[START] * len(files), total=total)  # fmt: skip


def test_a_stopped_replay_resumes_from_its_checkpoint_sending_each_event_once(
    tmp_path: Path,
) -> None:
    events = sim(customers=300, days=6, seed=5)
    assert len(events) > 3 * 4096  # the stop comes at the second progress tick
    half = [e for e in events if zlib.crc32(e.customer_id.encode()) % 2]
    other = [e for e in events if not zlib.crc32(e.customer_id.encode()) % 2]
    files = [InputFile.at(write(tmp_path / "a.jsonl", half)), InputFile.at(write(tmp_path / "b.jsonl", other))]  # fmt: skip
    path = tmp_path / "cp.json"
    state = checkpoint_for(files, len(events))
    first = ListSink()
    calls = {"n": 0}

    def stop_after_two_ticks() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    stats = run_replay(
        merged(files, state.positions, EventValidator(), InvalidLog()),
        [first],  # type: ignore[list-item]
        checkpointing=Checkpointing(path, state, every_seconds=3600),
        should_stop=stop_after_two_ticks,
    )
    assert stats.interrupted and 0 < stats.sent < len(events)
    saved = Checkpoint.load(path)
    assert saved.delivered == stats.sent == len(first.events) and not saved.complete
    assert first.flushes >= 2  # at the start and at the stop, before each checkpoint

    second = ListSink()
    resumed = run_replay(
        merged(saved.source_files(), saved.positions, EventValidator(), InvalidLog()),
        [second],  # type: ignore[list-item]
        checkpointing=Checkpointing(path, saved),
    )
    assert not resumed.interrupted and Checkpoint.load(path).complete
    assert Counter(map(encode_event, first.events + second.events)) == Counter(
        map(encode_event, events)
    )
    assert Counter(e.event_id for e in first.events + second.events) == Counter(
        e.event_id for e in events
    )
    assert Checkpoint.load(path).delivered == len(events)
    times = [e.event_time for e in first.events + second.events]
    assert times == sorted(times)


def test_events_already_in_kafka_after_the_checkpoint_are_skipped_once(tmp_path: Path) -> None:
    events = sim(days=1)
    file = InputFile.at(write(tmp_path / "e.jsonl", events))
    already = Counter({events[0].event_id: 1, events[1].event_id: 1, "someone-else": 3})
    sink = ListSink()
    stats = run_replay(
        merged([file], [START], EventValidator(), InvalidLog()), [sink], delivered_before=already
    )  # type: ignore[list-item]
    assert sink.events == events[2:]
    assert stats.already_delivered == 2


def test_pacing_follows_event_time_at_the_given_speed(tmp_path: Path) -> None:
    events = sim(days=1)[:3]
    spaced = [e.__class__(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "event_time": T0 + timedelta(seconds=10 * i)}) for i, e in enumerate(events)]  # fmt: skip
    file = InputFile.at(write(tmp_path / "e.jsonl", spaced))
    stats = run_replay(
        merged([file], [START], EventValidator(), InvalidLog()), [ListSink()], speed=20
    )  # type: ignore[list-item]
    assert stats.sent == 3 and stats.seconds >= 0.95  # 20 s of event time at 20x


def test_checkpoints_are_written_whole_and_refuse_changed_inputs(tmp_path: Path) -> None:
    file = InputFile.at(write(tmp_path / "e.jsonl", sim(days=1)))
    state = checkpoint_for([file], 10)
    state.positions = [(120, 3)]
    state.topic_ends = {"t.customer-activity": {0: 5, 1: 7}}
    path = tmp_path / "replay" / "cp.json"
    state.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["cp.json"]
    loaded = Checkpoint.load(path)
    assert (loaded.positions, loaded.topic_ends) == (
        [(120, 3)],
        {"t.customer-activity": {0: 5, 1: 7}},
    )
    assert loaded.source_files() == [file]
    write(tmp_path / "e.jsonl", sim(days=2))
    with pytest.raises(CheckpointError, match="changed since the interrupted replay"):
        loaded.source_files()
    assert plan_id({"a": 1, "b": [2]}) == plan_id({"b": [2], "a": 1}) != plan_id({"a": 2, "b": [2]})


# --- the command without Kafka --------------------------------------------------------------


@pytest.fixture
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings for commands that must not need a broker: an address nothing listens on."""
    from core.settings import get_settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("CHURN_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_dry_run_validates_everything_and_sends_nothing(tmp_path: Path, offline_env: None) -> None:
    events = sim(days=2)
    lines = [encode_event(e) for e in events]
    lines[3] = (
        b'{"type": "teleport", "event_id": "x", "customer_id": "c", "event_time": "2026-01-01T00:00:00Z", "payload": {}}'
    )
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "e.jsonl"), "--dry-run", "--json", "--rejects", str(rejects)])  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["events"] == len(events) - 1 and report["invalid"] == 1
    assert report["invalid_by_code"] == {"unknown_type": 1}
    assert "line 4: field 'type': unknown event type 'teleport'" in report["invalid_examples"][0]
    assert json.loads(rejects.read_text())["line"] == 4
    assert sum(report["events_by_type"].values()) == len(events) - 1


def test_archive_only_replay_round_trips_through_parquet(tmp_path: Path, offline_env: None) -> None:
    events = sim(customers=15, days=3)
    write(tmp_path / "e.jsonl", events)
    archive = tmp_path / "archive"
    args = ["replay", str(tmp_path / "e.jsonl"), "--no-kafka", "--archive", str(archive), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sent"] == len(events)
    assert [encode_event(e) for e in EventArchive(archive).read_events()] == [encode_event(e) for e in sorted(events, key=lambda e: (e.event_time, e.event_id))]  # fmt: skip
    # The archive folder is itself a replay input (Parquet, one file per date).
    again = CliRunner().invoke(app, ["replay", str(archive), "--dry-run", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["events"] == len(events)
    # A second archive-only replay of the archive itself, sorted across its date files.
    copy = tmp_path / "copy"
    third = CliRunner().invoke(app, ["replay", str(archive), "--no-kafka", "--archive", str(copy), "--json"])  # fmt: skip
    assert third.exit_code == 0, third.output
    assert EventArchive(copy).count() == len(events)


def test_resume_without_an_interrupted_replay_says_so(tmp_path: Path, offline_env: None) -> None:
    write(tmp_path / "e.jsonl", sim(days=1))
    args = ["replay", str(tmp_path / "e.jsonl"), "--no-kafka", "--archive", str(tmp_path / "a")]
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 2
    assert "no interrupted replay of these inputs" in result.stderr
    assert CliRunner().invoke(app, args).exit_code == 0
    done = CliRunner().invoke(app, [*args, "--resume"])
    assert done.exit_code == 0 and "nothing to resume" in done.stderr


def test_unknown_inputs_and_bad_options_exit_2(tmp_path: Path, offline_env: None) -> None:
    (tmp_path / "x.csv").write_text("a\n")
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "x.csv"), "--dry-run"])
    assert result.exit_code == 2 and "x.csv: unknown format" in result.stderr
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "x.csv"), "--speed", "fast"])
    assert result.exit_code == 2 and "expected 'max' or a positive number" in result.output


def test_archive_folders_replay_their_parquet_and_closed_segments(tmp_path: Path) -> None:
    from core.archive import SegmentLog

    events = sim(customers=10, days=2, seed=9)
    half = len(events) // 2
    archive = EventArchive(tmp_path / "archive")
    archive.write([ArchivedEvent.of(e, "t") for e in events[:half]])
    log = SegmentLog(tmp_path / "archive")
    log.append([ArchivedEvent.of(e, "worker") for e in events[half:-10]])
    log.rotate()  # closed: waiting for compaction
    log.append([ArchivedEvent.of(e, "worker") for e in events[-10:]])  # still open
    files, skipped = discover([tmp_path / "archive"])
    assert sorted(f.format for f in files).count("segment") == 1
    assert [p.suffix for p in skipped] == [".open"]
    out = replay_all(files, tmp_path)
    assert [encode_event(e) for e in out] == [encode_event(e) for e in events[:-10]]
    log.close()
