"""Training on the real UCI Online Retail file: the figures the trainer reports are computed
on the split it states (recomputed here independently), with labels strictly after and
features strictly before each cutoff. Skipped when the file is absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.aggregates import CustomerAggregates
from core.features import feature_matrix
from offline.importers.online_retail import import_online_retail
from offline.train import TrainingRun, fit_linear
from offline.transactions import (
    RFM_NAMES,
    TransactionTrainingConfig,
    rfm_features,
    train_on_transactions,
)
from tests.support_data import online_retail_file

VALID = ("2011-08-01", "2011-09-01")


@pytest.fixture(scope="module")
def real() -> tuple[list, TrainingRun]:
    events, _ = import_online_retail(online_retail_file())
    config = TransactionTrainingConfig(horizon_days=90, retention_days=400, with_boosting=False)
    return events, train_on_transactions(events, config)


def test_the_split_is_the_stated_one_and_purged(real: tuple[list, TrainingRun]) -> None:
    _, run = real
    training = run.training
    assert [c[:10] for c in training["valid_cutoffs"]] == list(VALID)
    first_valid = datetime(2011, 8, 1, tzinfo=UTC)
    train_cutoffs = [datetime.fromisoformat(c) for c in training["train_cutoffs"]]
    assert train_cutoffs and all(c + timedelta(days=90) <= first_valid for c in train_cutoffs)
    assert training["label"] == "no_purchase" and training["horizon_days"] == 90


def test_reported_auc_is_recomputed_on_the_stated_validation_rows(
    real: tuple[list, TrainingRun],
) -> None:
    events, run = real
    cutoffs = [datetime.fromisoformat(c) for c in run.training["valid_cutoffs"]]
    rows = 0
    all_y, all_scores = [], []
    for cutoff in cutoffs:
        # Features: the worker's aggregates of the events strictly before the cutoff.
        aggs: dict[str, CustomerAggregates] = {}
        for e in events:
            if e.event_time < cutoff:
                aggs.setdefault(e.customer_id, CustomerAggregates(e.customer_id)).apply(e, 400)
        customers = list(aggs)
        X = feature_matrix(
            [aggs[c] for c in customers], int(cutoff.timestamp()), run.model.feature_names
        )
        # Label: no purchase in (cutoff, cutoff + 90 days], counted by brute force.
        end = cutoff + timedelta(days=90)
        buyers = {
            e.customer_id for e in events if e.type == "purchase" and cutoff < e.event_time <= end
        }
        y = np.array([c not in buyers for c in customers], dtype=int)
        scores = run.model.score_many(X)
        key = cutoff.date().isoformat()
        assert run.metrics["roc_auc_by_cutoff"][key] == pytest.approx(
            roc_auc_score(y, scores), abs=1e-6
        )
        rows += len(customers)
        all_y.append(y)
        all_scores.append(scores)
    assert rows == run.metrics["rows"] == run.training["valid_rows"]
    y, scores = np.concatenate(all_y), np.concatenate(all_scores)
    assert run.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-6)
    assert run.metrics["base_rate"] == pytest.approx(y.mean(), abs=1e-6)


def test_the_rfm_baseline_is_fitted_and_validated_on_the_same_split(
    real: tuple[list, TrainingRun],
) -> None:
    events, run = real
    train_cuts = [int(datetime.fromisoformat(c).timestamp()) for c in run.training["train_cutoffs"]]
    # The training rows: every customer seen before each training cutoff.
    ids, cuts, labels = [], [], []
    for cut in train_cuts:
        seen = {e.customer_id for e in events if e.event_time.timestamp() < cut}
        buyers = {
            e.customer_id for e in events
            if e.type == "purchase" and cut < e.event_time.timestamp() <= cut + 90 * 86400
        }  # fmt: skip
        for customer in sorted(seen):
            ids.append(customer)
            cuts.append(cut)
            labels.append(int(customer not in buyers))
    assert len(ids) == run.training["train_rows"]
    y_train = np.array(labels)
    baseline = fit_linear(
        rfm_features(events, ids, np.array(cuts)), y_train, RFM_NAMES, transform="signed_log1p"
    )
    valid = run.valid
    scores = baseline.score_many(rfm_features(events, valid.customer_ids, valid.cutoffs))
    assert run.metrics["baseline"]["roc_auc"] == pytest.approx(
        roc_auc_score(valid.y, scores), abs=1e-6
    )


def test_the_model_beats_the_rfm_baseline_on_both_cutoffs(real: tuple[list, TrainingRun]) -> None:
    _, run = real
    baseline = run.metrics["baseline"]
    assert run.metrics["roc_auc"] > baseline["roc_auc"]
    for day in VALID:
        assert run.metrics["roc_auc_by_cutoff"][day] > baseline["roc_auc_by_cutoff"][day]
