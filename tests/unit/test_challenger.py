"""The river challenger: prequential shadow scoring, learning, persistence, and its
conversion into a registrable LinearModel that scores exactly like it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.model import BandCutoffs
from offline.challenger import OnlineChallenger, matured_cutoffs
from offline.dataset import Dataset, build_dataset
from offline.simulator import SimulationConfig, simulate
from offline.train import train_bootstrap


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    config = SimulationConfig(customers=600, days=100, seed=21)
    cutoffs = [config.start + timedelta(days=d) for d in range(21, 101, 7)]
    return build_dataset(simulate(config), cutoffs, 14, observed_until=config.end)


def fresh(dataset: Dataset) -> OnlineChallenger:
    return OnlineChallenger(tuple(dataset.feature_names), dataset.label, dataset.horizon_days)


def test_scores_in_shadow_before_learning_then_learns(dataset: Dataset) -> None:
    cutoffs = np.unique(dataset.cutoffs)
    assert len(cutoffs) >= 6
    first_half = dataset.select(np.flatnonzero(dataset.cutoffs <= cutoffs[len(cutoffs) // 2]))
    train = first_half
    champion, _ = train_bootstrap(
        train.select(np.flatnonzero(train.cutoffs < cutoffs[len(cutoffs) // 2])),
        train.select(np.flatnonzero(train.cutoffs == cutoffs[len(cutoffs) // 2])),
    )
    challenger = fresh(dataset)
    results = challenger.update(dataset, champion)
    assert [r.rows for r in results] == [int((dataset.cutoffs == c).sum()) for c in cutoffs]
    # the first cutoff is scored before anything was learned: no ranking at all
    assert results[0].challenger_auc == pytest.approx(0.5)
    # later cutoffs are scored by a model that learned the earlier ones, never their own
    later = [r.challenger_auc for r in results[len(results) // 2 :] if r.challenger_auc]
    assert later and min(later) > 0.7
    assert all(r.champion_auc is not None for r in results)
    summary = challenger.summary()
    assert summary["rows_learned"] == len(dataset)
    assert summary["cutoffs_learned"] == len(cutoffs)
    assert 0.5 < summary["challenger_roc_auc"] < 1.0
    assert 0.5 < summary["champion_roc_auc"] < 1.0
    # learned cutoffs are never learned twice
    assert challenger.update(dataset, champion) == []
    assert challenger.rows_learned == len(dataset)


def test_becomes_a_linear_model_with_the_same_scores(dataset: Dataset, tmp_path: Path) -> None:
    challenger = fresh(dataset)
    challenger.update(dataset, None)
    model = challenger.to_linear_model("v-challenger", BandCutoffs(medium=0.3, high=0.6))
    X = dataset.X[:500]
    assert np.allclose(model.score_many(X), challenger.predict_many(X), atol=1e-9)
    assert model.metadata["rows_learned"] == len(dataset)

    challenger.save(tmp_path)
    again = OnlineChallenger.load(tmp_path)
    assert again is not None and again.learned_cutoffs == challenger.learned_cutoffs
    assert np.allclose(again.predict_many(X), challenger.predict_many(X))
    assert OnlineChallenger.load(tmp_path / "none") is None


def test_refuses_a_dataset_with_other_features(dataset: Dataset) -> None:
    challenger = OnlineChallenger(("a", "b"), "cancellation", 14)
    with pytest.raises(ValueError, match="features differ"):
        challenger.update(dataset, None)


def test_a_cutoff_is_scored_only_by_labels_matured_by_then(dataset: Dataset) -> None:
    """Label delay: the rows of a cutoff are scored by the challenger as it was when it had
    learned only the cutoffs whose label window (horizon) had ended by then, never a
    cutoff whose outcome was still unknown."""
    cutoffs = np.unique(dataset.cutoffs)
    horizon_s = dataset.horizon_days * 86_400
    assert horizon_s > cutoffs[1] - cutoffs[0]  # a label matures only cutoffs later
    results = fresh(dataset).update(dataset, None)
    for k in (1, 2, 3, len(cutoffs) - 1):
        matured = cutoffs[cutoffs + horizon_s <= cutoffs[k]]
        # the challenger as it was then: one that learned exactly the matured cutoffs
        then = fresh(dataset)
        if len(matured):
            then.update(dataset.select(np.flatnonzero(np.isin(dataset.cutoffs, matured))), None)
        rows = np.flatnonzero(dataset.cutoffs == cutoffs[k])
        expected = roc_auc_score(dataset.y[rows], then.predict_many(dataset.X[rows]))
        assert results[k].challenger_auc == round(expected, 4), k  # reported to 4 places
    assert len(cutoffs[cutoffs + horizon_s <= cutoffs[2]]) == 1  # k=2 saw one, k=1 none


def test_only_cutoffs_whose_label_window_has_ended_are_learned() -> None:
    first = datetime(2026, 1, 1, 15, tzinfo=UTC)
    for days in (60, 61, 66, 67):
        last = first + timedelta(days=days)
        cutoffs = matured_cutoffs(first, last, horizon_days=14)
        assert cutoffs and all(c + timedelta(days=14) <= last for c in cutoffs)
        # the next weekly cutoff's window has not ended yet
        assert cutoffs[-1] + timedelta(days=7 + 14) > last
