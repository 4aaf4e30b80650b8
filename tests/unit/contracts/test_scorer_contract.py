"""The contract every :class:`core.model.Scorer` keeps: one suite, run against every
implementation and every way the project makes one (trained, trained with transformed
or sign-bounded features, the river challenger's export, an artifact read back from
disk, the trainer's provisional fit, a hand-specified model).

What the worker and the API rely on: scores are probabilities; scoring is deterministic
and a row's score does not depend on its batch (``score_many`` equals ``score_one`` row
by row); bands follow the model's cut-offs; contributions name every feature in
``feature_names`` order and add up to the score's log-odds; every feature is required;
the metadata gives the valuation its horizon; and the worker's
(:func:`stream.scoring.score_customers`) and the API's (:func:`core.risk.assess_stored`)
answers are the scorer's own.

A new implementation joins by adding a factory to :data:`IMPLEMENTATIONS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.aggregates import CustomerAggregates
from core.champion import retention_needed
from core.features import FEATURE_NAMES, feature_matrix, silence_direction
from core.model import BANDS, BandCutoffs, Scorer, artifact_sha256, load_model
from core.risk import FEATURE_INDEX, assess_stored
from core.store import StoredCustomer
from core.targeting import Valuation, model_horizon_days
from offline.challenger import OnlineChallenger
from offline.dataset import Dataset
from offline.evaluate import BandPolicy
from offline.train import fit_linear, split_latest_cutoffs, train_bootstrap
from stream.scoring import score_customers
from tests.support_models import recency_model
from tests.unit.contracts.histories import all_histories

NAMES = (
    "sessions_7d",
    "plays_30d",
    "error_rate_30d",
    "like_share_30d",
    "days_since_last_activity",
    "days_since_first_seen",
    "is_paid",
    "orders_90d",
    "revenue_90d",
    "days_since_last_purchase",
)
CUTOFFS = [datetime(2026, 1, 29, tzinfo=UTC) + timedelta(days=7 * k) for k in range(16)]
SCORED_AT = datetime(2026, 4, 2, 9, 30, tzinfo=UTC).timestamp()

Factory = Callable[[Dataset, Path], Scorer]


@pytest.fixture(scope="module")
def states() -> list[CustomerAggregates]:
    return [history.state() for history in all_histories()]


@pytest.fixture(scope="module")
def dataset(states: list[CustomerAggregates]) -> Dataset:
    """Rows of the histories at weekly cutoffs with a label drawn from a known logistic
    model of silence and sessions (seeded)."""
    times = np.repeat([int(c.timestamp()) for c in CUTOFFS], len(states))
    X = feature_matrix(states * len(CUTOFFS), times, NAMES)
    silence, sessions = X[:, NAMES.index("days_since_last_activity")], X[:, 0]
    odds = np.exp(0.06 * silence - 0.4 * np.log1p(sessions) - 1.0)
    y = (np.random.default_rng(3).random(len(X)) < odds / (1 + odds)).astype(np.int8)
    ids = [s.customer_id for s in states] * len(CUTOFFS)
    return Dataset(X=X, y=y, customer_ids=ids, cutoffs=times, feature_names=NAMES)


def trained(data: Dataset, _: Path) -> Scorer:
    model, _metrics = train_bootstrap(*split_latest_cutoffs(data), version="contract-trained")
    return model


def trained_log(data: Dataset, _: Path) -> Scorer:
    fit = fit_linear(data.X, data.y, data.feature_names, transform="signed_log1p")
    return fit.model("contract-log", BandPolicy().cutoffs(fit.score_many(data.X)), {"x": 1})


def sign_bounded(data: Dataset, _: Path) -> Scorer:
    signs = [silence_direction(name) for name in data.feature_names]
    fit = fit_linear(data.X, data.y, data.feature_names, signs=signs)
    return fit.model("contract-bounded", BandCutoffs(medium=0.3, high=0.6), {"horizon_days": 30})


def provisional_fit(data: Dataset, _: Path) -> Scorer:
    return fit_linear(data.X, data.y, data.feature_names)


def river_challenger(data: Dataset, _: Path) -> Scorer:
    challenger = OnlineChallenger(data.feature_names, data.label, data.horizon_days)
    challenger.update(data, None)
    return challenger.to_linear_model("contract-river", BandCutoffs(medium=0.2, high=0.5))


def registry_artifact(data: Dataset, directory: Path) -> Scorer:
    model, _metrics = train_bootstrap(*split_latest_cutoffs(data), version="contract-artifact")
    path = directory / "model.json"
    path.write_text(model.to_json(), encoding="utf-8")
    return load_model(path, artifact_sha256(path))


def hand_specified(_data: Dataset, _dir: Path) -> Scorer:
    return recency_model("contract-hand")


IMPLEMENTATIONS: dict[str, Factory] = {
    "trained": trained,
    "trained-signed-log1p": trained_log,
    "trained-sign-bounded": sign_bounded,
    "provisional-fit": provisional_fit,
    "river-challenger": river_challenger,
    "registry-artifact": registry_artifact,
    "hand-specified": hand_specified,
}


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def scorer(
    request: pytest.FixtureRequest, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Scorer:
    return IMPLEMENTATIONS[request.param](dataset, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def all_features(states: list[CustomerAggregates]) -> np.ndarray:
    """What the worker and the API compute: every feature of every history at a few times,
    then rows of extreme values a caller of ``POST /score`` may send."""
    live = [feature_matrix(states, int(SCORED_AT + d * 86_400)) for d in (-60, 0, 45)]
    n = len(FEATURE_NAMES)
    extremes = np.array([np.zeros(n), np.full(n, 1e6), np.full(n, -1e6), np.full(n, 0.5)])
    return np.vstack([*live, extremes])


def inputs(scorer: Scorer, all_features: np.ndarray) -> np.ndarray:
    """The scorer's columns, picked the way :mod:`core.risk` picks them."""
    return all_features[:, [FEATURE_INDEX[name] for name in scorer.feature_names]]


def named(scorer: Scorer, row: np.ndarray) -> dict[str, float]:
    return dict(zip(scorer.feature_names, row.tolist(), strict=True))


def test_feature_names_are_known_features_without_repeats(scorer: Scorer) -> None:
    names = scorer.feature_names
    assert isinstance(names, tuple) and names
    assert len(set(names)) == len(names)
    assert set(names) <= set(FEATURE_NAMES)
    assert isinstance(scorer.version, str) and scorer.version


def test_scores_are_probabilities(scorer: Scorer, all_features: np.ndarray) -> None:
    scores = scorer.score_many(inputs(scorer, all_features))
    assert scores.shape == (len(all_features),)
    assert np.isfinite(scores).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    assert len(np.unique(scores)) > 1  # the features reach the score


def test_scoring_is_deterministic(scorer: Scorer, all_features: np.ndarray) -> None:
    x = inputs(scorer, all_features)
    np.testing.assert_array_equal(scorer.score_many(x), scorer.score_many(x))
    np.testing.assert_array_equal(scorer.contributions_many(x), scorer.contributions_many(x))
    # a copy elsewhere in memory may take another BLAS path: equal to the last few bits
    np.testing.assert_allclose(scorer.score_many(x.copy()), scorer.score_many(x), rtol=1e-12)


def test_batch_equals_one_by_one(scorer: Scorer, all_features: np.ndarray) -> None:
    x = inputs(scorer, all_features)
    batch = scorer.score_many(x)
    one_by_one = np.array([scorer.score_one(named(scorer, row)) for row in x])
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-12, atol=1e-15)
    # a row's score does not depend on the other rows of its batch
    order = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_allclose(scorer.score_many(x[order]), batch[order], rtol=1e-12, atol=1e-15)
    terms = np.array([list(scorer.contributions(named(scorer, row)).values()) for row in x])
    np.testing.assert_allclose(terms, scorer.contributions_many(x), atol=1e-12)


def test_bands_follow_the_cut_offs(scorer: Scorer, all_features: np.ndarray) -> None:
    cut = scorer.bands
    assert 0.0 <= cut.medium <= cut.high <= 1.0
    scores = np.sort(scorer.score_many(inputs(scorer, all_features)))
    bands = [scorer.band_of(float(s)) for s in scores]
    assert bands == cut.bands_of(scores)
    ranks = [BANDS.index(band) for band in bands]
    assert ranks == sorted(ranks)  # a higher score never has a lower band
    assert scorer.band_of(cut.high) == "high" and scorer.band_of(cut.medium) in ("medium", "high")


def test_contributions_name_every_feature_and_add_up_to_the_log_odds(
    scorer: Scorer, all_features: np.ndarray
) -> None:
    x = inputs(scorer, all_features)
    row = named(scorer, x[0])
    assert list(scorer.contributions(row)) == list(scorer.feature_names)
    terms = scorer.contributions_many(x)
    assert terms.shape == x.shape
    scores = scorer.score_many(x)
    inside = (scores > 1e-6) & (scores < 1 - 1e-6)  # log-odds of saturated scores are lost
    assert inside.sum() >= 10
    log_odds = np.log(scores[inside] / (1 - scores[inside]))
    base = log_odds - terms[inside].sum(axis=1)  # the same for every row: the model's base
    rounding = len(scorer.feature_names) * 5e-7  # contributions are rounded to 6 decimals
    assert float(base.max() - base.min()) <= 2 * rounding + 1e-9


def test_every_feature_is_required(scorer: Scorer, all_features: np.ndarray) -> None:
    row = named(scorer, inputs(scorer, all_features)[0])
    missing = scorer.feature_names[-1]
    del row[missing]
    with pytest.raises(KeyError, match=missing):
        scorer.score_one(row)


def test_metadata_serves_the_valuation_and_the_registry(scorer: Scorer) -> None:
    metadata = scorer.metadata
    json.dumps(dict(metadata))  # stored with the artifact as JSON
    horizon = model_horizon_days(metadata, 14)
    assert math.isfinite(horizon) and horizon > 0
    assert retention_needed(scorer) >= 0


def test_the_api_answers_with_the_scorers_own_score_band_and_reasons(
    scorer: Scorer, states: list[CustomerAggregates]
) -> None:
    assessed = assess_stored(scorer, [StoredCustomer(s, None) for s in states], SCORED_AT)
    x = inputs(scorer, feature_matrix(states, int(SCORED_AT)))
    scores = scorer.score_many(x)
    for result, row, score in zip(assessed, x, scores.tolist(), strict=True):
        assert result is not None and result.score == score
        assert result.band == scorer.band_of(score) and result.model_version == scorer.version
        terms = scorer.contributions(named(scorer, row))
        assert all(terms[name] == value != 0.0 for name, value in result.top_contributions)
        magnitudes = [abs(value) for _, value in result.top_contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert magnitudes[:1] == [max(map(abs, terms.values()))] or not any(terms.values())


def test_the_worker_stores_the_scorers_own_score_and_band(
    scorer: Scorer, states: list[CustomerAggregates]
) -> None:
    customers = [StoredCustomer(s, None) for s in states]
    stored, changes = score_customers(scorer, customers, SCORED_AT, valuation=Valuation())
    scores = scorer.score_many(inputs(scorer, feature_matrix(states, int(SCORED_AT))))
    np.testing.assert_allclose([s.score for s in stored], scores, rtol=0, atol=5e-7 + 1e-12)
    assert [s.band for s in stored] == scorer.bands.bands_of(scores)
    assert {s.model_version for s in stored} == {scorer.version}
    assert len(changes) == len(customers)  # none had a band before
