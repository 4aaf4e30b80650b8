"""Training: a standardised logistic regression exported as a :class:`core.model.LinearModel`.

:func:`train_bootstrap` fits scikit-learn's ``LogisticRegression(class_weight="balanced")``
on features clipped to the training range (the 0.1th..99.9th percentile of each feature)
and standardised with the training mean and standard deviation (1 for a constant feature),
which is exactly what ``LinearModel.score_many`` applies, so the exported artifact scores
the same as the fitted estimator. Balanced class weights make the raw scores centre on
0.5; the exported intercept is shifted by the log prior odds of the training set (the
standard correction for re-weighting), so scores read as probabilities of the label.

Metrics are measured on the validation set: ``roc_auc``, ``pr_auc`` (average precision),
``brier``, ``base_rate`` and ``rows`` (and ``train_rows``, ``train_base_rate``, the share
of positives in the High and Medium bands). Bands are cut on validation scores: High is the
top 10 % (quantile 0.9), Medium the next 20 % (quantile 0.7).

:func:`bootstrap_from_simulation` trains the first model of a fresh install on simulator
output, with weekly cutoffs and a time-based split (:func:`split_by_cutoff`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from core.model import BandCutoffs, LinearModel
from offline.dataset import Dataset, LabelKind, build_dataset, to_epoch_seconds

HIGH_QUANTILE = 0.9  # High = top 10 % of validation scores
MEDIUM_QUANTILE = 0.7  # Medium = the next 20 %
REFERENCE_ROWS = 5_000  # rows of the drift reference sample stored with a model
CLIP_PERCENTILES = (0.1, 99.9)

Progress = Callable[[str], None]


def new_version(now: datetime | None = None) -> str:
    """A fresh model version: ``v<UTC yyyymmddThhmmss>-<6 hex>``.

    >>> new_version(datetime(2026, 1, 5, 10, 15, tzinfo=UTC))[:17]
    'v20260105T101500-'
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"v{moment:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def split_by_cutoff(
    dataset: Dataset, valid_from: datetime, *, purge: bool = True
) -> tuple[Dataset, Dataset]:
    """(train, valid): validation rows have cutoffs at or after ``valid_from``; training rows
    earlier ones. With ``purge`` (the default) a training row is kept only when its label
    window ``(cutoff, cutoff + horizon]`` ends by ``valid_from``, so no training label
    looks into the validation period."""
    start = to_epoch_seconds(valid_from)
    valid = dataset.cutoffs >= start
    train = ~valid
    if purge:
        train &= dataset.cutoffs + dataset.horizon_days * 86_400 <= start
    return dataset.select(train), dataset.select(valid)


def _fit_transform(X: np.ndarray) -> dict[str, np.ndarray]:
    """Clip bounds, mean and scale of the training features (scale 1 when constant)."""
    lower, upper = np.percentile(X, CLIP_PERCENTILES, axis=0)
    clipped = np.clip(X, lower, upper)
    mean = clipped.mean(axis=0)
    scale = clipped.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return {"lower": lower, "upper": upper, "mean": mean, "scale": scale}


def _metrics(y: np.ndarray, scores: np.ndarray, bands: BandCutoffs) -> dict[str, float]:
    both_classes = 0 < y.sum() < len(y)
    high, medium = scores >= bands.high, (scores >= bands.medium) & (scores < bands.high)
    return {
        "roc_auc": float(roc_auc_score(y, scores)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(y, scores)),
        "base_rate": float(y.mean()),
        "rows": len(y),
        "high_band_rate": float(y[high].mean()) if high.any() else 0.0,
        "medium_band_rate": float(y[medium].mean()) if medium.any() else 0.0,
    }


def train_bootstrap(
    dataset_train: Dataset, dataset_valid: Dataset, version: str | None = None
) -> tuple[LinearModel, dict[str, Any]]:
    """Fit on ``dataset_train``, measure and cut bands on ``dataset_valid``.

    Returns the model (``metadata`` records the label, horizon and training cutoffs) and
    the validation metrics (see the module docstring). Both sets need rows; the training
    set needs both classes.
    """
    if len(dataset_train) == 0 or len(dataset_valid) == 0:
        raise ValueError(
            f"need training and validation rows (got {len(dataset_train)} and "
            f"{len(dataset_valid)}): use more days or customers, or an earlier split"
        )
    if not 0 < dataset_train.y.sum() < len(dataset_train):
        raise ValueError("the training set has a single class; cannot fit a classifier")
    names = dataset_train.feature_names
    version = version or new_version()
    params = _fit_transform(dataset_train.X)
    Z = (np.clip(dataset_train.X, params["lower"], params["upper"]) - params["mean"]) / params[
        "scale"
    ]
    estimator = LogisticRegression(class_weight="balanced", max_iter=1000)
    estimator.fit(Z, dataset_train.y)
    prior = float(dataset_train.y.mean())
    intercept = float(estimator.intercept_[0]) + float(np.log(prior / (1.0 - prior)))

    def build(bands: BandCutoffs) -> LinearModel:
        return LinearModel(
            version=version,
            feature_names=tuple(names),
            coef=tuple(float(c) for c in estimator.coef_[0]),
            intercept=intercept,
            mean=tuple(params["mean"].tolist()),
            scale=tuple(params["scale"].tolist()),
            lower=tuple(params["lower"].tolist()),
            upper=tuple(params["upper"].tolist()),
            bands=bands,
            metadata={
                "algorithm": "sklearn LogisticRegression(class_weight=balanced), prior-corrected",
                "label": dataset_train.label,
                "horizon_days": dataset_train.horizon_days,
                "train_cutoffs": _cutoff_range(dataset_train),
                "valid_cutoffs": _cutoff_range(dataset_valid),
            },
        )

    provisional = build(BandCutoffs(medium=0.5, high=0.5))
    scores = provisional.score_many(dataset_valid.X)
    medium, high = np.quantile(scores, [MEDIUM_QUANTILE, HIGH_QUANTILE]).tolist()
    bands = BandCutoffs(medium=float(medium), high=float(max(high, medium)))
    model = build(bands)
    metrics: dict[str, Any] = _metrics(dataset_valid.y, scores, bands)
    metrics["train_rows"] = len(dataset_train)
    metrics["train_base_rate"] = prior
    return model, metrics


def reference_sample(
    model: LinearModel, X: np.ndarray, max_rows: int = REFERENCE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """The drift reference for ``model``: up to ``max_rows`` rows of ``X`` (sampled without
    replacement, seeded) as a frame with one column per feature, plus the model's ``score``."""
    rows = np.arange(len(X))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    sample = X[rows]
    frame = pd.DataFrame(sample, columns=list(model.feature_names))
    frame["score"] = model.score_many(sample)
    return frame


def _cutoff_range(dataset: Dataset) -> list[str]:
    """[first, last] cutoff of a dataset as UTC ISO strings (empty when it has no rows)."""
    if len(dataset) == 0:
        return []
    return [
        datetime.fromtimestamp(int(t), UTC).isoformat().replace("+00:00", "Z")
        for t in (dataset.cutoffs.min(), dataset.cutoffs.max())
    ]


def bootstrap_from_simulation(
    customers: int = 2000,
    days: int = 90,
    seed: int = 7,
    horizon_days: int = 14,
    *,
    label: LabelKind = "cancellation_or_inactivity",
    first_cutoff_day: int = 28,
    version: str | None = None,
    progress: Progress | None = None,
) -> tuple[LinearModel, dict[str, Any], pd.DataFrame]:
    """Simulate ``customers`` for ``days`` (seed ``seed``), build weekly cutoffs from day
    ``first_cutoff_day`` on, hold out the last third of the (uncensored) cutoffs for
    validation and train. The model's ``metadata["training"]`` describes the data.
    Returns the model, its validation metrics and its drift reference sample."""
    from offline.simulator import SimulationConfig, simulate

    say = progress or (lambda _message: None)
    config = SimulationConfig(customers=customers, days=days, seed=seed)
    cutoffs = [config.start + timedelta(days=d) for d in range(first_cutoff_day, days + 1, 7)]
    say(f"simulating {customers:,} customers over {days} days and building the dataset")
    dataset = build_dataset(
        simulate(config), cutoffs, horizon_days, label=label, observed_until=config.end
    )
    kept = np.unique(dataset.cutoffs)
    if len(kept) < 2:
        raise ValueError(
            f"only {len(kept)} uncensored weekly cutoff(s) between day {first_cutoff_day} and "
            f"day {days} with a {horizon_days}-day horizon: simulate more days"
        )
    n_valid = max(1, round(len(kept) / 3))
    valid_from = datetime.fromtimestamp(int(kept[-n_valid]), UTC)
    train_set, valid_set = split_by_cutoff(dataset, valid_from)
    if len(train_set) == 0:  # too few cutoffs for a purged split: fall back to a plain one
        train_set, valid_set = split_by_cutoff(dataset, valid_from, purge=False)
    say(f"training on {len(train_set):,} rows, validating on {len(valid_set):,}")
    model, metrics = train_bootstrap(train_set, valid_set, version=version)
    training = {
        "source": "simulator",
        "simulation": {"customers": customers, "days": days, "seed": seed,
                       "start": config.start.isoformat().replace("+00:00", "Z")},
        "label": label,
        "horizon_days": horizon_days,
        "cutoffs": f"weekly from day {first_cutoff_day}",
        "train_cutoffs": model.metadata["train_cutoffs"],
        "valid_cutoffs": model.metadata["valid_cutoffs"],
        "train_rows": len(train_set),
        "valid_rows": len(valid_set),
    }  # fmt: skip
    model = replace(model, metadata={**model.metadata, "training": training})
    return model, metrics, reference_sample(model, valid_set.X)
