"""Drift reports on disk (the API's index contract, bounded history) and Evidently's
verdicts read back from a comparison. No services needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.compare import compare
from monitoring.drift import compare_within
from monitoring.reports import ReportStore
from serving.routes.reports import served_reports

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _save(store: ReportStore, at: datetime, share: float) -> str:
    saved = store.save(
        at,
        lambda path: path.write_text(f"<html>{share}</html>"),
        {"summary": {"drift_share": share}},
        {"drift_share": share, "dataset_drift": share >= 0.5, "drifted_features": ["a"]},
    )
    return str(saved.entry["id"])


def test_index_follows_the_api_contract(tmp_path: Path) -> None:
    store = ReportStore(tmp_path, keep=10)
    first = _save(store, T0, 0.1)
    second = _save(store, T0, 0.7)  # same second: a distinct id
    assert first == "20260301T120000Z" and second == "20260301T120000Z-2"
    index = json.loads((tmp_path / "index.json").read_text())
    assert [e["id"] for e in index] == [first, second]
    for entry in index:
        assert entry["created_at"] == "2026-03-01T12:00:00Z"
        assert (tmp_path / entry["html"]).is_file() and (tmp_path / entry["json"]).is_file()
        assert json.loads((tmp_path / entry["json"]).read_text())["id"] == entry["id"]
    assert index[1]["drift_share"] == 0.7 and index[1]["dataset_drift"] is True
    assert index[1]["drifted_features"] == ["a"]
    # what the API reads from it: newest first, every entry served
    assert {e["id"] for e in served_reports(tmp_path)} == {first, second}
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_history_is_bounded_and_old_files_are_deleted(tmp_path: Path) -> None:
    store = ReportStore(tmp_path, keep=3)
    ids = [_save(store, T0 + timedelta(minutes=i), i / 10) for i in range(5)]
    index = json.loads((tmp_path / "index.json").read_text())
    assert [e["id"] for e in index] == ids[2:]
    assert sorted(p.name for p in tmp_path.glob("*.html")) == sorted(f"{i}.html" for i in ids[2:])
    assert sorted(p.name for p in tmp_path.glob("*.json") if p.name != "index.json") == sorted(
        f"{i}.json" for i in ids[2:]
    )
    assert [e["id"] for e in served_reports(tmp_path)] == list(reversed(ids[2:]))


def test_a_broken_index_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"index\.json: not valid JSON"):
        _save(ReportStore(tmp_path), T0, 0.1)


def _frames(shifted: list[str], rows: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    reference = pd.DataFrame({n: rng.normal(size=rows) for n in names})
    current = pd.DataFrame(
        {n: rng.normal(loc=1.0 if n in shifted else 0.0, size=rows) for n in names}
    )
    reference["score"] = rng.uniform(size=rows)
    current["score"] = rng.uniform(size=rows)
    return reference, current


def test_evidently_verdicts_per_feature_and_for_the_dataset() -> None:
    reference, current = _frames(shifted=["a", "c", "d"])
    summary = compare(reference, current, ["a", "b", "c", "d"]).summary
    assert summary.drifted_features == ["a", "c", "d"]
    assert summary.drift_share == pytest.approx(0.75)
    assert summary.dataset_drift
    assert summary.score is not None and not summary.score.drifted
    assert all(c.method and c.score is not None for c in summary.features)
    assert summary.rows_current == summary.rows_reference == 400

    reference, current = _frames(shifted=["b"])
    summary = compare(reference, current, ["a", "b", "c", "d"], share_threshold=0.5).summary
    assert summary.drifted_features == ["b"] and not summary.dataset_drift
    # the rule is configurable: a quarter of the features is enough at 0.25
    summary = compare(reference, current, ["a", "b", "c", "d"], share_threshold=0.25).summary
    assert summary.dataset_drift


def test_the_score_distribution_is_compared_too() -> None:
    reference, current = _frames(shifted=[])
    current["score"] = np.clip(current["score"] + 0.3, 0, 1)
    summary = compare(reference, current, ["a", "b", "c", "d"]).summary
    assert summary.drifted_features == [] and summary.score is not None and summary.score.drifted


def test_missing_columns_and_empty_samples_are_refused() -> None:
    reference, current = _frames(shifted=[])
    with pytest.raises(ValueError, match="lacks the columns e"):
        compare(reference, current, ["a", "e"])
    with pytest.raises(ValueError, match="cannot compare empty samples"):
        compare(reference, current.iloc[:0], ["a"])


def test_a_page_over_the_size_limit_is_redone_on_fewer_rows(tmp_path: Path) -> None:
    reference, current = _frames(shifted=["a"], rows=4000)
    full, full_size = compare_within(
        reference, current, ["a", "b"], 0.5, 100_000_000, tmp_path / "full.html"
    )
    # a limit just under the full page: one halving of both samples is needed
    smaller, size = compare_within(
        reference, current, ["a", "b"], 0.5, full_size - 1, tmp_path / "small.html"
    )
    assert size < full_size
    assert smaller.summary.rows_current == 2000 and smaller.summary.rows_reference == 2000
    assert full.summary.rows_current == 4000
