"""Small, fully specified models for tests (real LinearModel objects, not stand-ins)."""

from __future__ import annotations

from collections.abc import Mapping

from core.features import FEATURE_NAMES
from core.model import BandCutoffs, LinearModel

RECENCY_WEIGHTS = {"days_since_last_activity": 0.35, "sessions_7d": -0.4, "error_rate_30d": 2.0}


def linear_model(
    version: str,
    weights: Mapping[str, float],
    intercept: float,
    bands: BandCutoffs = BandCutoffs(medium=0.4, high=0.7),
    mean: Mapping[str, float] | None = None,
    scale: Mapping[str, float] | None = None,
) -> LinearModel:
    """A logistic model on raw features: ``sigmoid(intercept + sum(w * (x - mean) / scale))``
    over the named features (the others weigh 0; mean 0 and scale 1 unless given)."""
    names = FEATURE_NAMES
    mean, scale = mean or {}, scale or {}
    return LinearModel(
        version=version,
        feature_names=names,
        coef=tuple(weights.get(name, 0.0) for name in names),
        intercept=intercept,
        mean=tuple(mean.get(name, 0.0) for name in names),
        scale=tuple(scale.get(name, 1.0) for name in names),
        lower=tuple(-1e9 for _ in names),
        upper=tuple(1e9 for _ in names),
        bands=bands,
    )


def recency_model(version: str = "test-recency-1") -> LinearModel:
    """Risk rises with days since last activity and falls with recent sessions.

    Deterministic and directional, which is what the worker tests need.
    """
    return linear_model(version, RECENCY_WEIGHTS, intercept=-1.0)


def engagement_model(version: str = "test-engagement-1") -> LinearModel:
    """Other weights than :func:`recency_model` (sessions weigh more, silence less, a
    lower intercept): the same customer gets another score, often another band."""
    weights = {"days_since_last_activity": 0.15, "sessions_7d": -0.9, "error_rate_30d": 4.0}
    return linear_model(version, weights, intercept=0.5)
