"""The Sparkify importer on a hand-made log with every page type, and on bad input."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.events import EventValidator
from offline.importers.sparkify_files import Reject, SparkifyFormatError, import_sparkify

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sparkify_sample.jsonl"
ALL_PAGES = {
    "About", "Add Friend", "Add to Playlist", "Cancel", "Cancellation Confirmation",
    "Downgrade", "Error", "Help", "Home", "Login", "Logout", "NextSong", "Register",
    "Roll Advert", "Save Settings", "Settings", "Submit Downgrade", "Submit Registration",
    "Submit Upgrade", "Thumbs Down", "Thumbs Up", "Upgrade",
}  # fmt: skip
# The mapping, written out independently of the importer's table.
EXPECTED_TYPE = {
    "NextSong": "play", "Thumbs Up": "like", "Thumbs Down": "dislike",
    "Cancellation Confirmation": "cancellation", "Submit Downgrade": "downgrade",
    "Submit Upgrade": "upgrade", "Help": "help", "Error": "error", "Add Friend": "add_friend",
    "Add to Playlist": "add_to_playlist",
}  # fmt: skip


def run(paths: list[Path]) -> tuple[list[dict], list[Reject], object]:
    out: list[bytes] = []
    rejects: list[Reject] = []
    report = import_sparkify(paths, out.append, rejects.append)
    return [json.loads(line) for line in out], rejects, report


def sample_rows() -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(SAMPLE.read_text().splitlines(), start=1):
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return rows


def test_the_sample_has_every_sparkify_page() -> None:
    assert {row.get("page") for _, row in sample_rows()} - {None} == ALL_PAGES


def test_every_row_with_a_user_becomes_the_event_of_its_page() -> None:
    events, _, _ = run([SAMPLE])
    by_id = {e["event_id"]: e for e in events}
    converted = 0
    for _, row in sample_rows():
        if not row.get("userId") or not isinstance(row.get("ts"), int) or "page" not in row:
            continue
        user = str(int(row["userId"])) if isinstance(row["userId"], float) else row["userId"]
        event = by_id[f"spk-{user}-{row['sessionId']}-{row['itemInSession']}-{row['ts']}"]
        converted += 1
        assert event["customer_id"] == user
        assert event["type"] == EXPECTED_TYPE.get(row["page"], "page_view")
        if event["type"] == "page_view":
            assert event["payload"]["page"] == row["page"].lower().replace(" ", "_")
        if event["type"] == "play":
            assert event["payload"]["duration_s"] == row["length"]
        if event["type"] == "error":
            assert event["payload"]["code"] == row["status"]
    assert converted == 26
    validator = EventValidator()
    for event in events:
        validator.decode(json.dumps(event))


def test_rejects_name_the_line_and_the_reason_and_the_import_goes_on() -> None:
    events, rejects, report = run([SAMPLE])
    got = {(r.line, r.code, r.field) for r in rejects}
    assert got == {
        (4, "no_user", "userId"), (7, "no_user", "userId"), (8, "no_user", "userId"),
        (6, "invalid_json", None), (15, "invalid_value", "ts"), (24, "missing_field", "page"),
    }  # fmt: skip
    assert all(r.file == str(SAMPLE) and r.raw for r in rejects)
    raw_lines = SAMPLE.read_text().splitlines()
    assert all(r.raw == raw_lines[r.line - 1] for r in rejects)
    assert report.rows == 32 and report.rejected == 6  # 33 lines, one blank
    assert report.rows - report.rejected == 26
    assert report.events == len(events) == 26 + 2 * report.sessions


def test_sessions_are_derived_and_end_on_a_new_session_id_or_a_gap() -> None:
    events, _, report = run([SAMPLE])
    starts = [e for e in events if e["type"] == "session_start"]
    ends = {e["payload"]["session_id"] + "@" + e["event_id"].rsplit("-", 1)[1]: e for e in events if e["type"] == "session_end"}  # fmt: skip
    assert report.sessions == len(starts) == len(ends) == 5
    # User 9 comes back to sessionId 8 after 45 minutes: two sessions with the same id.
    nine = [(e["event_time"], e["type"]) for e in events if e["customer_id"] == "9" and e["type"].startswith("session")]  # fmt: skip
    assert nine == [
        ("2018-10-01T00:00:30Z", "session_start"), ("2018-10-01T00:06:00Z", "session_end"),
        ("2018-10-01T00:51:00Z", "session_start"), ("2018-10-01T00:53:00Z", "session_end"),
    ]  # fmt: skip
    for start in starts:
        end = ends[start["payload"]["session_id"] + "@" + start["event_id"].rsplit("-", 1)[1]]
        assert end["event_time"] >= start["event_time"]
        # Every event of the session lies between its start and its end.
        inside = [
            e for e in events
            if e["payload"].get("session_id") == start["payload"]["session_id"]
            and start["event_time"] <= e["event_time"] <= end["event_time"]
        ]  # fmt: skip
        assert inside
    assert {s["payload"]["device"] for s in starts} == {"web", "ios"}
    first_30 = next(s for s in starts if s["customer_id"] == "30")
    assert first_30["payload"]["level"] == "paid"
    end_30 = ends["30-s29@1538352000000"]
    assert end_30["payload"]["duration_s"] == 15 * 60


def test_reactions_refer_to_the_last_song_of_the_session() -> None:
    events, _, _ = run([SAMPLE])
    thirty = [e for e in events if e["customer_id"] == "30"]
    plays = [e for e in thirty if e["type"] == "play"]
    like = next(e for e in thirty if e["type"] == "like")
    dislike = next(e for e in thirty if e["type"] == "dislike")
    assert like["payload"]["item_id"] == plays[0]["payload"]["item_id"]
    assert dislike["payload"]["item_id"] == plays[1]["payload"]["item_id"]
    assert plays[0]["payload"]["item_id"] != plays[1]["payload"]["item_id"]


def test_output_is_in_event_time_order_and_deterministic(tmp_path: Path) -> None:
    events, _, report = run([SAMPLE])
    times = [e["event_time"] for e in events]
    assert times == sorted(times) and report.late_rows == 0
    zipped = tmp_path / "log.json.gz"
    zipped.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    again, _, _ = run([zipped])
    assert again == events
    assert len({e["event_id"] for e in events}) == len(events)


def test_rows_out_of_time_order_are_converted_and_counted_as_late(tmp_path: Path) -> None:
    row = {"userId": "5", "sessionId": 1, "page": "Home", "level": "free", "itemInSession": 0}
    lines = [dict(row, ts=1538352000000 + minutes * 60_000, itemInSession=i) for i, minutes in enumerate([0, 200, 300, 10])]  # fmt: skip
    path = tmp_path / "unsorted.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    events, rejects, report = run([path])
    assert not rejects and report.late_rows == 1  # the 10-minute row, after the 200-minute one
    assert sum(e["type"] == "page_view" for e in events) == 4
    times = [e["event_time"] for e in events]
    assert times != sorted(times)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"UserId,ts,page\n30,1538352000000,Home\n", "expected a Sparkify event log"),
        (b'[{"ts": 1, "page": "Home"}]\n', "expected a Sparkify event log"),
        (b'{"type": "play", "event_id": "e1"}\n', "expected a Sparkify event log"),
    ],
)
def test_a_file_in_another_format_stops_the_import_naming_the_file(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "other.json"
    path.write_bytes(content)
    with pytest.raises(SparkifyFormatError, match=expected) as info:
        run([SAMPLE, path])
    assert str(path) in str(info.value)


def test_a_missing_file_or_a_directory_stops_the_import(tmp_path: Path) -> None:
    with pytest.raises(SparkifyFormatError, match=r"cannot read .*nope\.json"):
        run([tmp_path / "nope.json"])
    with pytest.raises(SparkifyFormatError, match="is a directory"):
        run([tmp_path])


def test_cli_writes_events_rejects_and_a_json_report(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["import", "sparkify", str(SAMPLE), "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 32 and report["rejected"] == 6 and report["customers"] == 3
    assert report["rejects_by_code"] == {"no_user": 3, "invalid_json": 1, "invalid_value": 1, "missing_field": 1}  # fmt: skip
    assert report["first_event_time"] == "2018-10-01T00:00:00Z"
    assert report["last_event_time"] == "2018-10-01T02:02:00Z"
    lines = out.read_text().splitlines()
    assert len(lines) == report["events"] == 36
    assert Counter(json.loads(x)["type"] for x in lines) == Counter(report["events_by_type"])
    rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [4, 6, 7, 8, 15, 24]
    assert not Path(f"{out}.partial").exists()


def test_cli_unknown_format_exits_2_and_leaves_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "retail.csv"
    bad.write_text("InvoiceNo,StockCode\n536365,85123A\n")
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["import", "sparkify", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "expected a Sparkify event log" in result.stderr
    assert not out.exists() and not Path(f"{out}.partial").exists()
    assert not Path(f"{out}.rejects.jsonl").exists()
