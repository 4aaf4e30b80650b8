"""A customer's risk *now*: live features at request time, the champion's score and why.

Used by ``churnstream risk`` and the API, so both answer the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.features import FEATURE_NAMES, features_of
from core.model import LinearModel
from core.scores import Score
from core.store import FeatureStore


@dataclass(frozen=True)
class RiskAssessment:
    """Times are epoch seconds (UTC); contributions are signed log-odds terms."""

    customer_id: str
    at: float
    features: dict[str, float]
    score: float | None
    band: str | None
    model_version: str | None
    top_contributions: list[tuple[str, float]]
    last_event_time: int
    stored_score: Score | None


def top_contributions(contributions: Mapping[str, float], top: int = 5) -> list[tuple[str, float]]:
    """The ``top`` non-zero contributions, largest magnitude first.

    >>> top_contributions({"a": 0.5, "b": -2.0, "c": 0.0, "d": 1.0}, top=2)
    [('b', -2.0), ('d', 1.0)]
    """
    nonzero = [(name, value) for name, value in contributions.items() if value != 0.0]
    return sorted(nonzero, key=lambda item: abs(item[1]), reverse=True)[:top]


def assess(
    store: FeatureStore,
    model: LinearModel | None,
    customer_id: str,
    now: float,
    top: int = 5,
) -> RiskAssessment | None:
    """The customer's live assessment at ``now``, or None for a customer never seen."""
    stored = store.load_customer(customer_id)
    if stored is None or stored.aggregates.first_seen < 0:
        return None
    features = features_of(stored.aggregates, int(now))
    score = band = version = None
    ranked: list[tuple[str, float]] = []
    if model is not None:
        score = model.score_one(features)
        band = model.band_of(score)
        version = model.version
        contributions = model.contributions(features)
        ranked = top_contributions(contributions, top)
    return RiskAssessment(
        customer_id=customer_id,
        at=now,
        features={name: features[name] for name in FEATURE_NAMES},
        score=score,
        band=band,
        model_version=version,
        top_contributions=ranked,
        last_event_time=stored.aggregates.last_event,
        stored_score=stored.score,
    )
