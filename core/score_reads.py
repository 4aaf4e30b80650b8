"""Reads of the stored scores: rankings, counts per band, and the latest score's fields.

The online store exposes them as ``FeatureStore.scores`` (:class:`ScoreReads`); the API,
the monitor and the demo read stored scores only through it. Questions about all
customers go to every shard's sorted sets and merge the answers (:mod:`core.leaderboard`,
on a single Redis and on a Redis Cluster alike); a customer's fields are read from their
hash (field names in :mod:`core.keys`).

Conventions: scores are churn probabilities in [0, 1]; times are epoch seconds (UTC);
a field the hash lacks reads as None. Score ranges use ``ZCOUNT`` syntax (``"(0.5"`` is an
open bound, ``"-inf"`` and ``"+inf"`` the ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis

from core import leaderboard
from core.customer_encoding import decode_score
from core.keys import SCORE_FIELD, Keys
from core.leaderboard import Ranked
from core.model import BANDS, BandCutoffs

ScoreRange = tuple[object, object]  # (min, max) in ZCOUNT syntax
READ_CHUNK = 5000  # customers per pipeline when reading one field of many hashes


def band_ranges(cutoffs: BandCutoffs) -> dict[str, ScoreRange]:
    """The score range of each band, in :data:`core.model.BANDS` order: low below
    ``medium``, medium from ``medium`` up to ``high`` (excluded), high from ``high`` on.

    >>> band_ranges(BandCutoffs(medium=0.3, high=0.6))
    {'low': ('-inf', '(0.3'), 'medium': (0.3, '(0.6'), 'high': (0.6, '+inf')}
    """
    medium, high = cutoffs.medium, cutoffs.high
    ranges: tuple[ScoreRange, ...] = (("-inf", f"({medium}"), (medium, f"({high}"), (high, "+inf"))
    return dict(zip(BANDS, ranges, strict=True))


@dataclass(frozen=True)
class RankedCustomer:
    """One customer of a ranking: ``score`` from the risk index, the other fields from
    their hash (None where missing)."""

    customer_id: str
    score: float
    band: str | None
    model_version: str | None
    scored_at: float | None
    last_event_time: int | None


@dataclass(frozen=True)
class RiskPage:
    """A page of the ranking by stored score, and how many customers the ranking holds."""

    total: int
    customers: list[RankedCustomer]


class ScoreReads:
    """Reads of the stored scores of one key layout (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    # --- counts --------------------------------------------------------------------------

    def scored(self) -> int:
        """How many customers have a stored score."""
        return leaderboard.scored_customers(self.redis, self.keys)

    def count_in(self, ranges: Sequence[ScoreRange]) -> list[int]:
        """Per score range, the customers whose latest score lies in it (one round trip
        per Redis node; O(shards x log n) each)."""
        return leaderboard.count_scores(self.redis, self.keys, ranges)

    def band_counts(self, cutoffs: BandCutoffs) -> dict[str, int]:
        """Customers whose latest score falls in each band of ``cutoffs`` (keys in
        :data:`core.model.BANDS` order). Counted by score, so customers scored by an
        earlier model with other cut-offs count in the band these cut-offs give them."""
        ranges = band_ranges(cutoffs)
        return dict(zip(ranges, self.count_in(list(ranges.values())), strict=True))

    # --- rankings ------------------------------------------------------------------------

    def at_risk(self, band: str | None, offset: int, limit: int) -> RiskPage:
        """Customers ``[offset, offset + limit)`` by latest stored score, highest first
        (ties by customer id, descending), optionally only those whose stored band is
        ``band``; two round trips per Redis node, O(shards x (log n + offset + limit))."""
        total, page = leaderboard.top_page(self.redis, self.keys, band, offset, limit)
        return RiskPage(total, self._ranked(page))

    def _ranked(self, page: list[Ranked]) -> list[RankedCustomer]:
        if not page:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for member, _ in page:
            pipe.hget(self.keys.customer(member.decode()), SCORE_FIELD)
        ranked = []
        for (member, score), data in zip(page, pipe.execute(), strict=True):
            customer_id = member.decode()
            stored = decode_score(customer_id, data) if data else None
            ranked.append(
                RankedCustomer(
                    customer_id=customer_id,
                    score=float(score),
                    band=stored.band if stored else None,
                    model_version=stored.model_version if stored else None,
                    scored_at=stored.scored_at if stored else None,
                    last_event_time=stored.last_event_time if stored else None,
                )
            )
        return ranked

    def all_scores(self) -> list[Ranked]:
        """Every customer's latest stored score, as (id, score) (unordered)."""
        return leaderboard.all_scores(self.redis, self.keys)

    def scored_between(self, low: object, high: object) -> list[str]:
        """Ids of the customers whose latest score was written in ``[low, high]``
        (``ZRANGEBYSCORE`` syntax), oldest first."""
        return leaderboard.scored_between(self.redis, self.keys, low, high)

    # --- per customer --------------------------------------------------------------------

    def scores_of(self, customer_ids: Sequence[str]) -> list[float | None]:
        """Each customer's latest stored score (None when none), in order."""
        return leaderboard.scores_of(self.redis, self.keys, customer_ids)

    def scored_at_of(self, customer_ids: Sequence[str]) -> list[float | None]:
        """The time of each customer's latest stored score (None when none), in order."""
        return leaderboard.scored_at_of(self.redis, self.keys, customer_ids)

    def model_versions(self, customer_ids: Sequence[str]) -> list[str | None]:
        """The model version of each customer's stored score (None when none), in order;
        one round trip per :data:`READ_CHUNK` customers."""
        versions: list[str | None] = []
        for start in range(0, len(customer_ids), READ_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            chunk = customer_ids[start : start + READ_CHUNK]
            for customer_id in chunk:
                pipe.hget(self.keys.customer(customer_id), SCORE_FIELD)
            datas = cast(list[bytes | None], pipe.execute())
            versions += (
                decode_score(c, data).model_version if data else None
                for c, data in zip(chunk, datas, strict=True)
            )
        return versions
