"""The live side of a drift check: recently scored customers' features, read from Redis.

Customers come from the ``scored_at`` index (:mod:`core.keys`): those scored at or after
``since`` (epoch seconds, UTC), sampled uniformly without replacement (seeded) down to
``size``. Each is read back from the store without its event hashes and its features are
computed with :func:`core.features.feature_matrix` at ``as_of`` (epoch seconds, UTC;
normally now), exactly as the worker and the API compute them. The ``score`` column is the
given model's score of those features, so it is comparable with the reference sample's
(which the same model scored when it was trained).

The population matches the training rows a reference sample comes from
(:mod:`offline.dataset`): customers first seen before ``as_of`` who have not cancelled
before it. A cancellation is known by day tile, so one on the day of ``as_of`` counts as
before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.aggregates import DAY_SECONDS, C, CustomerAggregates
from core.features import feature_matrix
from core.model import LinearModel
from core.store import FeatureStore

READ_CHUNK = 1000  # customers per Redis pipeline
_CANCELLATION = C["cancellation"]


@dataclass(frozen=True)
class LiveSample:
    """Features (one column per model feature) plus ``score``, one row per customer."""

    frame: pd.DataFrame
    customer_ids: list[str]
    as_of: float
    recent_customers: int  # scored at or after ``since``
    sampled: int  # read from Redis
    excluded: int  # sampled but cancelled before, or first seen after, ``as_of``


def recently_scored(store: FeatureStore, since: float) -> list[str]:
    """Ids of the customers whose latest score was written at or after ``since``."""
    return store.scores.scored_between(since, "+inf")


def in_population(aggregates: CustomerAggregates, as_of: float) -> bool:
    """First seen before ``as_of`` and no cancellation on a day up to the one of ``as_of``.

    >>> from datetime import UTC, datetime
    >>> from core.events import Cancellation, CancellationPayload
    >>> agg = CustomerAggregates("c1")
    >>> _ = agg.apply(Cancellation(event_id="e1", customer_id="c1",
    ...     event_time=datetime(2026, 1, 2, tzinfo=UTC), payload=CancellationPayload()))
    >>> t = datetime(2026, 1, 2, 12, tzinfo=UTC).timestamp()
    >>> in_population(agg, t), in_population(agg, t - 86_400)
    (False, False)
    >>> in_population(agg, datetime(2026, 1, 2, tzinfo=UTC).timestamp() + 1)
    False
    """
    if aggregates.n_rows == 0 or aggregates.first_seen >= as_of:
        return False
    as_of_day = (int(as_of) - 1) // DAY_SECONDS
    days = aggregates.tile_days()
    cancellations = aggregates.tile_counts()[:, _CANCELLATION]
    return not bool(np.any((cancellations > 0) & (days <= as_of_day)))


def live_sample(
    store: FeatureStore,
    model: LinearModel,
    *,
    since: float,
    as_of: float,
    size: int,
    seed: int = 0,
) -> LiveSample:
    """Sample up to ``size`` customers scored since ``since`` and compute their features
    and the model's score at ``as_of`` (see the module docstring)."""
    candidates = recently_scored(store, since)
    chosen: Sequence[str] = candidates
    if len(candidates) > size:
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(len(candidates), size=size, replace=False))
        chosen = [candidates[i] for i in picks.tolist()]
    kept: list[CustomerAggregates] = []
    for start in range(0, len(chosen), READ_CHUNK):
        loaded = store.load_customers(chosen[start : start + READ_CHUNK], with_event_hashes=False)
        kept.extend(c.aggregates for c in loaded.values() if in_population(c.aggregates, as_of))
    names = list(model.feature_names)
    if kept:
        X = feature_matrix(kept, int(as_of), names)
        scores = model.score_many(X)
    else:
        X, scores = np.zeros((0, len(names))), np.zeros(0)
    frame = pd.DataFrame(X, columns=names)
    frame["score"] = scores
    return LiveSample(
        frame=frame,
        customer_ids=[a.customer_id for a in kept],
        as_of=as_of,
        recent_customers=len(candidates),
        sampled=len(chosen),
        excluded=len(chosen) - len(kept),
    )
