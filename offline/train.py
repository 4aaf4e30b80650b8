"""Training: a standardised logistic regression exported as a :class:`core.model.LinearModel`.

:func:`fit_linear` fits scikit-learn's ``LogisticRegression(class_weight="balanced")``
on features clipped to the training range (the 0.1th..99.9th percentile of each feature),
optionally transformed (``signed_log1p``) and standardised with the training mean and
standard deviation (1 for a constant feature), which is exactly what
``LinearModel.score_many`` applies, so the exported artifact scores the same as the fitted
estimator. Balanced class weights make the raw scores centre on
0.5; the exported intercept is shifted by the log prior odds of the training set (the
standard correction for re-weighting), so scores read as probabilities of the label.

Metrics are measured on the validation set (see :mod:`offline.evaluate`): ``roc_auc``,
``pr_auc`` (average precision), ``brier``, ``base_rate``, ``rows``, precision / recall /
F1 at the High cut-off, top-decile lift... (and ``train_rows``, ``train_base_rate``, the
share of positives in each band). Bands are cut on validation scores: High is the
top 10 % (quantile 0.9), Medium the next 20 % (quantile 0.7).

:func:`bootstrap_from_simulation` trains the first model of a fresh install on simulator
output, with weekly cutoffs and a time-based split (:func:`split_by_cutoff`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from core.model import BandCutoffs, LinearModel, Scorer, apply_transform
from core.targeting import Valuation
from offline.dataset import (
    LABEL_DEFINITIONS,
    Dataset,
    LabelKind,
    build_dataset,
    to_epoch_seconds,
)
from offline.evaluate import BandPolicy, band_rates, classification_metrics
from offline.targeting_evaluation import evaluate_targeting

HIGH_QUANTILE = 0.9  # High = top 10 % of validation scores
MEDIUM_QUANTILE = 0.7  # Medium = the next 20 %
REFERENCE_ROWS = 5_000  # rows of the drift reference sample stored with a model
CLIP_PERCENTILES = (0.1, 99.9)

Progress = Callable[[str], None]
P = ParamSpec("P")


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


def split_latest_cutoffs(dataset: Dataset) -> tuple[Dataset, Dataset]:
    """(train, valid): the latest third of the dataset's cutoffs (at least one) validate,
    the earlier ones train (:func:`split_by_cutoff`, purged; a plain split when purging
    would leave no training rows)."""
    kept = np.unique(dataset.cutoffs)
    n_valid = max(1, round(len(kept) / 3))
    valid_from = datetime.fromtimestamp(int(kept[-n_valid]), UTC)
    train_set, valid_set = split_by_cutoff(dataset, valid_from)
    if len(train_set) == 0:  # too few cutoffs for a purged split: fall back to a plain one
        train_set, valid_set = split_by_cutoff(dataset, valid_from, purge=False)
    return train_set, valid_set


@dataclass(frozen=True)
class LinearFit(LinearModel):
    """A fitted, standardised logistic regression: a :class:`LinearModel` whose version and
    band cut-offs are provisional until :meth:`model` names them (it scores the same)."""

    train_base_rate: float = 0.0

    def model(
        self, version: str, bands: BandCutoffs, metadata: dict[str, Any] | None = None
    ) -> LinearModel:
        """The registrable model: these parameters under ``version`` and ``bands``."""
        parameters = {f.name: getattr(self, f.name) for f in fields(LinearModel)}
        parameters.update(version=version, bands=bands, metadata=dict(metadata or {}))
        return LinearModel(**parameters)


def fit_linear(
    X: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    *,
    transform: str = "identity",
    regularization: float = 1.0,
    signs: Sequence[int] | None = None,
) -> LinearFit:
    """Fit ``LogisticRegression(class_weight="balanced", C=regularization)`` on ``X`` clipped
    to its 0.1th..99.9th percentiles, transformed, and standardised (see the module
    docstring); the intercept is shifted by the log prior odds of ``y``.

    ``signs`` (one of -1, 0, 1 per feature) constrains coefficients: 1 means >= 0, -1 means
    <= 0, 0 free. With any constraint the same objective is minimised by L-BFGS-B with
    bounds (:func:`_fit_bounded`) instead of scikit-learn."""
    if len(y) == 0:
        raise ValueError("no training rows")
    if not 0 < int(np.sum(y)) < len(y):
        raise ValueError("the training set has a single class; cannot fit a classifier")
    lower, upper = np.percentile(X, CLIP_PERCENTILES, axis=0)
    Z = apply_transform(transform, np.clip(X, lower, upper))
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    standardised = (Z - mean) / scale
    if signs is not None and any(signs):
        coef, intercept = _fit_bounded(standardised, y, signs, regularization)
    else:
        estimator = LogisticRegression(class_weight="balanced", C=regularization, max_iter=1000)
        estimator.fit(standardised, y)
        coef, intercept = estimator.coef_[0], float(estimator.intercept_[0])
    prior = float(np.mean(y))
    return LinearFit(
        version="provisional",
        bands=BandCutoffs(medium=0.5, high=0.5),
        feature_names=tuple(feature_names),
        coef=tuple(float(c) for c in coef),
        intercept=intercept + float(np.log(prior / (1.0 - prior))),
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        lower=tuple(lower.tolist()),
        upper=tuple(upper.tolist()),
        transform=transform,
        train_base_rate=prior,
    )


def _fit_bounded(
    Z: np.ndarray, y: np.ndarray, signs: Sequence[int], regularization: float
) -> tuple[np.ndarray, float]:
    """Balanced-weight L2 logistic regression (scikit-learn's objective) with sign bounds on
    the coefficients; returns (coefficients, intercept)."""
    from scipy.optimize import minimize

    if len(signs) != Z.shape[1]:
        raise ValueError(f"{len(signs)} signs for {Z.shape[1]} features")
    target = np.asarray(y, dtype=np.float64)
    positives = target.sum()
    weights = np.where(
        target == 1, len(target) / (2 * positives), len(target) / (2 * (len(target) - positives))
    )

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        intercept, coef = theta[0], theta[1:]
        z = Z @ coef + intercept
        p = 1.0 / (1.0 + np.exp(-z))
        loss = regularization * float(np.sum(weights * (np.logaddexp(0.0, z) - target * z)))
        loss += 0.5 * float(coef @ coef)
        residual = regularization * weights * (p - target)
        return loss, np.concatenate([[residual.sum()], Z.T @ residual + coef])

    bounds = [(None, None)] + [
        (0.0, None) if sign > 0 else (None, 0.0) if sign < 0 else (None, None) for sign in signs
    ]
    result = minimize(
        objective,
        np.zeros(Z.shape[1] + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 5000},
    )
    if not result.success:
        raise RuntimeError(f"the constrained logistic fit did not converge: {result.message}")
    return np.asarray(result.x[1:]), float(result.x[0])


def _metrics(y: np.ndarray, scores: np.ndarray, bands: BandCutoffs) -> dict[str, Any]:
    metrics = classification_metrics(y, scores, threshold=bands.high)
    metrics.update(band_rates(y, scores, bands))
    return metrics


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
    fit = fit_linear(dataset_train.X, dataset_train.y, dataset_train.feature_names)
    scores = fit.score_many(dataset_valid.X)
    bands = BandPolicy(high_share=1 - HIGH_QUANTILE, medium_share=HIGH_QUANTILE - MEDIUM_QUANTILE)
    cut = bands.cutoffs(scores)
    model = fit.model(
        version or new_version(),
        cut,
        {
            "algorithm": "sklearn LogisticRegression(class_weight=balanced), prior-corrected",
            "label": dataset_train.label,
            "horizon_days": dataset_train.horizon_days,
            "train_cutoffs": _cutoff_range(dataset_train),
            "valid_cutoffs": _cutoff_range(dataset_valid),
        },
    )
    metrics: dict[str, Any] = _metrics(dataset_valid.y, scores, cut)
    metrics["train_rows"] = len(dataset_train)
    metrics["train_base_rate"] = fit.train_base_rate
    return model, metrics


def reference_sample(
    model: Scorer, X: np.ndarray, max_rows: int = REFERENCE_ROWS, seed: int = 0
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


@dataclass
class TrainingRun:
    """What one training run produced: the model, its validation ``metrics``, the
    ``training`` description (data, label, split), the drift ``reference`` sample, the
    validation rows (``valid``, with every feature the code defines, for the promotion gate)
    and the model's scores on them, and the features ranked by |standardised coefficient|."""

    model: LinearModel
    metrics: dict[str, Any]
    training: dict[str, Any]
    reference: pd.DataFrame
    valid: Dataset
    valid_scores: np.ndarray
    importances: list[tuple[str, float]]


def ranked_coefficients(model: LinearModel) -> list[tuple[str, float]]:
    """(feature, standardised coefficient), largest magnitude first."""
    pairs = zip(model.feature_names, model.coef, strict=True)
    return [(n, round(c, 6)) for n, c in sorted(pairs, key=lambda p: abs(p[1]), reverse=True)]


def simulation_run(
    customers: int = 2000,
    days: int = 90,
    seed: int = 7,
    horizon_days: int = 14,
    *,
    label: LabelKind = "cancellation_or_inactivity",
    first_cutoff_day: int = 28,
    version: str | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Simulate ``customers`` for ``days`` (seed ``seed``), build weekly cutoffs from day
    ``first_cutoff_day`` on, hold out the last third of the (uncensored) cutoffs for
    validation and train. The model's ``metadata["training"]`` describes the data."""
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
    train_set, valid_set = split_latest_cutoffs(dataset)
    say(f"training on {len(train_set):,} rows, validating on {len(valid_set):,}")
    model, metrics = train_bootstrap(train_set, valid_set, version=version)
    say("measuring retention targeting on the validation cutoffs")
    metrics["targeting"] = evaluate_targeting(
        valid_set, model.score_many(valid_set.X), Valuation(horizon_days=horizon_days)
    )
    if label == "cancellation_or_inactivity":  # the label the oracle knows how to price
        from offline.oracle import oracle_auc, probability_auc
        from offline.simulator import ground_truth

        truths = ground_truth(config)
        metrics["oracle_roc_auc"] = round(probability_auc(valid_set, truths), 6)
        metrics["oracle_state_roc_auc"] = round(oracle_auc(valid_set, truths, config), 6)
    training = {
        "source": "simulator",
        "simulation": {"customers": customers, "days": days, "seed": seed,
                       "start": config.start.isoformat().replace("+00:00", "Z")},
        "label": label,
        "label_definition": LABEL_DEFINITIONS[label].format(h=horizon_days),
        "horizon_days": horizon_days,
        "cutoffs": f"weekly from day {first_cutoff_day}",
        "train_cutoffs": model.metadata["train_cutoffs"],
        "valid_cutoffs": model.metadata["valid_cutoffs"],
        "train_rows": len(train_set),
        "valid_rows": len(valid_set),
    }  # fmt: skip
    model = replace(model, metadata={**model.metadata, "training": training})
    return TrainingRun(
        model=model,
        metrics=metrics,
        training=training,
        reference=reference_sample(model, valid_set.X),
        valid=valid_set,
        valid_scores=model.score_many(valid_set.X),
        importances=ranked_coefficients(model),
    )


def _model_metrics_reference(
    make_run: Callable[P, TrainingRun],
) -> Callable[P, tuple[LinearModel, dict[str, Any], pd.DataFrame]]:
    def model_metrics_reference(
        *args: P.args, **kwargs: P.kwargs
    ) -> tuple[LinearModel, dict[str, Any], pd.DataFrame]:
        run = make_run(*args, **kwargs)
        return run.model, run.metrics, run.reference

    return model_metrics_reference


bootstrap_from_simulation = _model_metrics_reference(simulation_run)
bootstrap_from_simulation.__doc__ = """:func:`simulation_run` (same arguments), returning the
model, its validation metrics and its drift reference sample."""
