"""Small, fully specified models for tests (real LinearModel objects, not stand-ins)."""

from __future__ import annotations

from core.features import FEATURE_NAMES
from core.model import BandCutoffs, LinearModel


def recency_model(version: str = "test-recency-1") -> LinearModel:
    """Risk rises with days since last activity and falls with recent sessions.

    Deterministic and directional, which is what the worker tests need.
    """
    weights = {"days_since_last_activity": 0.35, "sessions_7d": -0.4, "error_rate_30d": 2.0}
    names = FEATURE_NAMES
    return LinearModel(
        version=version,
        feature_names=names,
        coef=tuple(weights.get(name, 0.0) for name in names),
        intercept=-1.0,
        mean=tuple(0.0 for _ in names),
        scale=tuple(1.0 for _ in names),
        lower=tuple(-1e9 for _ in names),
        upper=tuple(1e9 for _ in names),
        bands=BandCutoffs(medium=0.4, high=0.7),
    )
