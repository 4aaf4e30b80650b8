"""The retraining trigger's verdicts and the promotion gate (pure functions, real models)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from monitoring.trigger import TriggerPolicy, auc_dropped, on_drift, on_performance
from offline.dataset import Dataset
from offline.retrain import RetrainError, gate, weekly_cutoffs
from tests.support_models import recency_model

POLICY = TriggerPolicy(retrain_on_drift=True, auc_drop_threshold=0.05, cooldown_seconds=60)


@pytest.mark.parametrize(
    ("dataset_drift", "on", "retrain"),
    [(True, True, True), (False, True, False), (True, False, False), (False, False, False)],
)
def test_drift_verdict(dataset_drift: bool, on: bool, retrain: bool) -> None:
    policy = replace(POLICY, retrain_on_drift=on)
    verdict = on_drift(dataset_drift, 0.6 if dataset_drift else 0.1, 0.5, ["plays_7d"], policy)
    assert verdict.retrain is retrain and verdict.trigger == "drift"
    assert verdict.metrics["drifted_features"] == ["plays_7d"]
    if dataset_drift and not on:
        assert "CHURN_RETRAIN_ON_DRIFT is off" in verdict.reason


@pytest.mark.parametrize(
    ("realized", "validation", "retrain"),
    [
        (0.80, 0.80, False),
        (0.761, 0.80, False),  # 4.9 % below: within the limit
        (0.759, 0.80, True),  # 5.1 % below
        (0.60, 0.80, True),
        (0.85, 0.80, False),  # better than validation
        (None, 0.80, False),
        (0.70, None, False),
        (float("nan"), 0.80, False),
    ],
)
def test_auc_drop_verdict(realized: float | None, validation: float | None, retrain: bool) -> None:
    verdict = on_performance(realized, validation, POLICY, {"period": "p1"})
    assert verdict.retrain is retrain and verdict.trigger == "auc_drop"
    assert verdict.metrics["period"] == "p1"


def test_the_drop_limit_is_configurable() -> None:
    assert not auc_dropped(0.70, 0.80, 0.2)
    assert auc_dropped(0.70, 0.80, 0.1)
    assert on_performance(0.70, 0.80, replace(POLICY, auc_drop_threshold=0.2)).retrain is False


def _dataset(rows: int = 600, seed: int = 0) -> Dataset:
    """Rows whose label follows days_since_last_activity (what recency_model scores)."""
    model = recency_model()
    rng = np.random.default_rng(seed)
    X = np.zeros((rows, len(model.feature_names)))
    col = model.feature_names.index("days_since_last_activity")
    X[:, col] = rng.exponential(5.0, rows)
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(X[:, col] - 6)))).astype(np.int8)
    return Dataset(
        X, y, [f"c{i}" for i in range(rows)], np.zeros(rows, np.int64), model.feature_names
    )


def test_the_gate_promotes_only_a_better_candidate() -> None:
    valid = _dataset()
    good = recency_model("good")
    bad = replace(good, version="bad", coef=tuple(-c for c in good.coef))
    passed, details = gate(champion=bad, candidate=good, valid=valid)
    assert passed.passed and passed.candidate_roc_auc > passed.champion_roc_auc  # type: ignore[operator]
    assert details["gate_rows"] == 600 and "beats champion bad's" in passed.reason
    assert details["candidate_pr_auc"] > details["champion_pr_auc"]
    kept, _ = gate(champion=good, candidate=bad, valid=valid)
    assert not kept.passed and "does not beat" in kept.reason
    # equal is not better
    assert not gate(champion=good, candidate=replace(good, version="same"), valid=valid)[0].passed
    # a required margin
    assert not gate(champion=bad, candidate=good, valid=valid, min_gain=0.99)[0].passed
    # no champion yet: the candidate goes through
    first, details = gate(champion=None, candidate=good, valid=valid)
    assert first.passed and first.champion_roc_auc is None
    assert details["champion_pr_auc"] is None


def test_the_gate_needs_both_classes() -> None:
    valid = _dataset()
    one_class = replace(valid, y=np.zeros_like(valid.y))
    with pytest.raises(RetrainError, match="single class"):
        gate(champion=None, candidate=recency_model(), valid=one_class)


def test_weekly_cutoffs_end_before_the_horizon_and_respect_the_window() -> None:
    now = datetime(2026, 6, 30, 15, tzinfo=UTC)
    cutoffs = weekly_cutoffs(now, horizon_days=14, window_days=60)
    assert cutoffs[-1] == datetime(2026, 6, 16, tzinfo=UTC)  # its label window ends by now
    assert all((b - a).days == 7 for a, b in itertools.pairwise(cutoffs))
    assert cutoffs[0] >= datetime(2026, 5, 1, 15, tzinfo=UTC)
    assert all(c.hour == 0 and c.minute == 0 for c in cutoffs)
    later = weekly_cutoffs(now, 14, 60, not_before=datetime(2026, 6, 1, tzinfo=UTC))
    assert later == [c for c in cutoffs if c >= datetime(2026, 6, 1, tzinfo=UTC)]
