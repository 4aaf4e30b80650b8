"""The fast signal: ADWIN on live scores raises an alert (metric + log line) on a shift
of the mean, and stays quiet on a stable stream."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from core import metrics
from monitoring.score_shift import ScoreShiftDetector


def _alerts() -> float:
    return metrics.MONITOR_SCORE_SHIFT_ALERTS._value.get()


def test_a_stable_score_stream_raises_no_alert() -> None:
    rng = np.random.default_rng(1)
    detector = ScoreShiftDetector(seed=1)
    before = _alerts()
    alerts = [detector.observe(rng.beta(2, 5, size=300), at=float(i)) for i in range(300)]
    assert alerts == [None] * 300
    assert _alerts() == before


def test_a_shift_of_the_mean_score_is_flagged_within_a_few_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(2)
    detector = ScoreShiftDetector(seed=2)
    for i in range(60):
        assert detector.observe(rng.beta(2, 5, size=300), at=float(i)) is None
    before = _alerts()
    found = None
    with caplog.at_level(logging.WARNING, logger="monitoring.score_shift"):
        for i in range(60, 70):  # mean 0.286 -> 0.342
            found = detector.observe(rng.beta(2.6, 5, size=300), at=float(i))
            if found:
                break
    assert found is not None, "no alert within 10 buckets of the shift"
    assert found.at <= 62  # within three buckets
    assert found.mean_after > found.mean_before
    assert found.bucket_mean == pytest.approx(0.342, abs=0.03)
    assert _alerts() == before + 1
    assert metrics.MONITOR_SCORE_MEAN._value.get() == pytest.approx(found.bucket_mean)
    [record] = [r for r in caplog.records if "score shift detected" in r.getMessage()]
    assert record.alert == "score_shift"  # type: ignore[attr-defined]
    assert record.mean_after > record.mean_before  # type: ignore[attr-defined]


def test_an_empty_bucket_changes_nothing() -> None:
    detector = ScoreShiftDetector()
    assert detector.observe(np.zeros(0), at=0.0) is None
    assert detector.buckets == 0
