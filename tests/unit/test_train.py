"""Training: the bootstrap model learns real signal, its bands are ordered, and the exported
artifact scores exactly like the fitted estimator after a JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from core.model import BandCutoffs, LinearModel
from offline.dataset import Dataset
from offline.train import bootstrap_from_simulation, new_version, split_by_cutoff, train_bootstrap

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def bootstrapped() -> tuple[LinearModel, dict[str, Any], pd.DataFrame]:
    return bootstrap_from_simulation(customers=700, days=90, seed=5, horizon_days=14)


def test_bootstrap_learns_signal(
    bootstrapped: tuple[LinearModel, dict[str, Any], pd.DataFrame],
) -> None:
    model, metrics, _ = bootstrapped
    assert metrics["roc_auc"] > 0.75
    assert metrics["pr_auc"] > metrics["base_rate"]  # better than random ranking
    assert 0.0 < metrics["brier"] < metrics["base_rate"]  # better than a constant 0
    assert metrics["rows"] > 500 and metrics["train_rows"] > 500
    assert metrics["high_band_rate"] > metrics["medium_band_rate"] > 0.0
    assert model.version.startswith("v") and len(model.version) == len(new_version())
    training = model.metadata["training"]
    assert training["source"] == "simulator" and training["horizon_days"] == 14
    assert training["train_cutoffs"][1] < training["valid_cutoffs"][0]


def test_band_cutoffs_are_ordered(
    bootstrapped: tuple[LinearModel, dict[str, Any], pd.DataFrame],
) -> None:
    model, _, _ = bootstrapped
    assert 0.0 < model.bands.medium <= model.bands.high < 1.0


def test_artifact_round_trips_with_identical_scores(
    bootstrapped: tuple[LinearModel, dict[str, Any], pd.DataFrame],
) -> None:
    model, _, _ = bootstrapped
    again = LinearModel.from_json(model.to_json())
    assert again == model and again.to_json() == model.to_json()
    X = np.random.default_rng(0).normal(3.0, 5.0, (200, len(model.feature_names)))
    assert np.array_equal(again.score_many(X), model.score_many(X))


def synthetic(n: int, cutoffs: list[int], seed: int = 0) -> Dataset:
    """Two informative features, a constant one and a noisy one; ~20 % positives."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(0, 1, n), rng.exponential(5, n), np.full(n, 7.0), rng.normal(0, 1, n)]
    )
    logit = -2.0 + 1.5 * X[:, 0] + 0.2 * X[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Dataset(
        X=X,
        y=y,
        customer_ids=[f"c{i}" for i in range(n)],
        cutoffs=np.array([cutoffs[i % len(cutoffs)] for i in range(n)], dtype=np.int64),
        feature_names=("signal", "skewed", "constant", "noise"),
        horizon_days=14,
    )


def test_exported_model_matches_the_training_transform() -> None:
    train, valid = synthetic(4000, [0]), synthetic(2000, [0], seed=1)
    model, metrics = train_bootstrap(train, valid, version="v-test")
    assert model.version == "v-test" and model.feature_names == train.feature_names
    constant = model.feature_names.index("constant")
    assert model.scale[constant] == 1.0 and model.coef[constant] == pytest.approx(0.0, abs=1e-9)
    assert model.lower == tuple(np.percentile(train.X, 0.1, axis=0).tolist())
    assert model.upper == tuple(np.percentile(train.X, 99.9, axis=0).tolist())
    assert model.coef[0] > 0.5 and abs(model.coef[3]) < 0.2  # signal vs noise (standardised)
    assert metrics["roc_auc"] > 0.8
    # the artifact reproduces sklearn on the clipped, standardised features (+ log prior odds)
    lower, upper = np.asarray(model.lower), np.asarray(model.upper)
    Z = (np.clip(train.X, lower, upper) - np.asarray(model.mean)) / np.asarray(model.scale)
    reference = LogisticRegression(class_weight="balanced", max_iter=1000).fit(Z, train.y)
    Zv = (np.clip(valid.X, lower, upper) - np.asarray(model.mean)) / np.asarray(model.scale)
    prior = train.base_rate
    expected = reference.decision_function(Zv) + np.log(prior / (1 - prior))
    logits = np.log(model.score_many(valid.X) / (1 - model.score_many(valid.X)))
    np.testing.assert_allclose(logits, expected, rtol=1e-7, atol=1e-7)
    # prior-corrected intercept: mean score close to the base rate, unlike a balanced fit
    scores = model.score_many(valid.X)
    assert abs(scores.mean() - valid.base_rate) < 0.05
    high_share = (scores >= model.bands.high).mean()
    medium_share = ((scores >= model.bands.medium) & (scores < model.bands.high)).mean()
    assert high_share == pytest.approx(0.1, abs=0.01)
    assert medium_share == pytest.approx(0.2, abs=0.01)


def test_split_by_cutoff_is_time_based_and_purged() -> None:
    days = [int((T0 + timedelta(days=d)).timestamp()) for d in (28, 35, 42, 49, 56)]
    ds = synthetic(500, days)
    valid_from = T0 + timedelta(days=49)
    train, valid = split_by_cutoff(ds, valid_from)
    assert set(valid.cutoffs.tolist()) == set(days[3:])
    assert set(train.cutoffs.tolist()) == set(days[:2])  # day 42 + 14 runs past day 49
    train_all, _ = split_by_cutoff(ds, valid_from, purge=False)
    assert set(train_all.cutoffs.tolist()) == set(days[:3])
    assert len(train_all) + len(valid) == len(ds)


def test_training_refuses_empty_or_single_class_sets() -> None:
    ds = synthetic(300, [0])
    with pytest.raises(ValueError, match="training and validation rows"):
        train_bootstrap(ds.select(np.zeros(len(ds), dtype=bool)), ds)
    with pytest.raises(ValueError, match="single class"):
        train_bootstrap(ds.select(ds.y == 0), ds)


def test_reference_sample_has_every_feature_and_the_score(
    bootstrapped: tuple[LinearModel, dict[str, Any], pd.DataFrame],
) -> None:
    model, _, reference = bootstrapped
    assert list(reference.columns) == [*model.feature_names, "score"]
    assert 0 < len(reference) <= 5_000
    assert reference["score"].between(0.0, 1.0).all()
    features = reference[list(model.feature_names)].to_numpy()
    assert np.allclose(reference["score"].to_numpy(), model.score_many(features))


def test_log_transformed_model_round_trips_and_explains_exactly() -> None:
    from core.model import apply_transform
    from offline.train import fit_linear

    train = synthetic(3000, [0])
    fit = fit_linear(np.abs(train.X), train.y, train.feature_names, transform="signed_log1p")
    model = fit.model("v-log", BandCutoffs(medium=0.3, high=0.6), {"note": "x"})
    again = LinearModel.from_json(model.to_json())
    X = np.abs(synthetic(200, [0], seed=4).X)
    assert again.transform == "signed_log1p"
    np.testing.assert_array_equal(again.score_many(X), model.score_many(X))
    row = dict(zip(model.feature_names, X[0].tolist(), strict=True))
    terms = model.contributions(row)
    logit = np.log(model.score_one(row) / (1 - model.score_one(row)))
    assert sum(terms.values()) + model.intercept == pytest.approx(logit, abs=1e-4)
    Z = apply_transform("signed_log1p", np.clip(X, model.lower, model.upper))
    expected = 1 / (1 + np.exp(-(((Z - model.mean) / model.scale) @ model.coef + model.intercept)))
    np.testing.assert_allclose(model.score_many(X), expected, rtol=1e-12)
    old = json.loads(model.to_json())
    del old["transform"]  # an artifact written before transforms existed reads as identity
    assert LinearModel.from_json(json.dumps(old)).transform == "identity"


def test_validation_metrics_on_a_known_case() -> None:
    from offline.evaluate import BandPolicy, classification_metrics

    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.05, 0.6, 0.4])
    m = classification_metrics(y, scores, threshold=0.6, cutoffs=np.array([0] * 5 + [86400] * 5))
    assert m["confusion"] == {"tp": 3, "fp": 1, "tn": 5, "fn": 1}
    assert m["precision"] == 0.75 and m["recall"] == 0.75 and m["f1"] == 0.75
    assert m["top_decile_lift"] == 2.5  # the top row churned; base rate 0.4
    assert set(m["roc_auc_by_cutoff"]) == {"1970-01-01", "1970-01-02"}
    assert 0 < m["roc_auc"] <= 1 and 0 < m["brier"] < 0.25
    with pytest.raises(ValueError):
        BandPolicy(high_share=0.6, medium_share=0.5)


def test_the_model_comes_within_003_of_the_simulators_oracle() -> None:
    """On the same validation rows, the trained model's ROC AUC is at least that of the
    simulator's true churn probabilities minus 0.03, and below the hidden-state oracle's
    (see offline.oracle)."""
    from offline.train import simulation_run

    run = simulation_run(customers=1500, days=90, seed=13, horizon_days=14)
    oracle, model = run.metrics["oracle_roc_auc"], run.metrics["roc_auc"]
    state = run.metrics["oracle_state_roc_auc"]
    assert 0.6 < oracle < 1.0  # the true probabilities rank well
    assert model >= oracle - 0.03, (model, oracle)
    assert model < state <= 1.0, (model, state)  # nobody beats knowing the hidden state
