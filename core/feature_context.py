"""The shared inputs of the feature functions: window sums, recency, gaps.

:class:`FeatureContext` lays the day tiles of many customers side by side once, sums every
window of :data:`WINDOW_DAYS` in one pass, and caches what several features need (purchase
gaps); the feature definitions in :mod:`core.features` read from it. Its values are
arrays, one element per customer.

:class:`CustomerContext` offers the same values for one customer as Python floats,
computed by plain loops over the customer's tiles: for one customer (an API lookup) the
fixed cost of ~70 small numpy calls is most of the work, and a loop over ~25 tiles is a
fraction of it. Both give the same values bit for bit (window sums are exact integer
sums; every other value is the same IEEE operations in the same order), so the features
of a customer do not depend on which context computed them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import cached_property
from operator import itemgetter
from typing import Literal

import numpy as np

from core.aggregates import ACTIVITY_COUNTERS, DAY_SECONDS, NEVER, C, CustomerAggregates

WINDOW_DAYS = (1, 7, 28, 30, 90, 180, 365)  # every window a feature uses
# A window longer than the store's retention (CHURN_RETENTION_DAYS) sees only the days kept.
ACTIVITY_COLUMNS = list(ACTIVITY_COUNTERS)
_WINDOW_EDGES = np.asarray(WINDOW_DAYS)
GAP_WINDOWS = (90, 365)  # the windows of purchase_gap_stats
Recency = Literal["first_seen", "last_activity", "last_purchase"]
RECENCY: tuple[Recency, ...] = ("first_seen", "last_activity", "last_purchase")
_ACTIVITY_OF = itemgetter(*ACTIVITY_COLUMNS)  # a row's activity counters
_ACTIVITY_INDEX = np.asarray(ACTIVITY_COLUMNS, dtype=np.intp)
_PURCHASE = C["purchase"]
# Above this many (customer x window x tile) cells, window sums use bincount, not a product.
_SMALL_PRODUCT = 4096


class FeatureContext:
    """Window sums and scalars of a group of customers at their times ``t``, computed
    once and shared by every feature (see :mod:`core.features` for the conventions)."""

    def __init__(self, aggregates: Sequence[CustomerAggregates], t: np.ndarray) -> None:
        self.n = len(aggregates)
        self.t = t.astype(np.float64)
        self.ref_day = (t - 1) // DAY_SECONDS  # the day holding the last instant before t
        sizes = np.fromiter((a.n_rows for a in aggregates), dtype=np.int64, count=self.n)
        if sizes.sum():
            self.days = np.concatenate([a.tile_days() for a in aggregates])
            self.counts = np.concatenate([a.tile_counts() for a in aggregates])
        else:
            self.days = np.zeros(0, dtype=np.int64)
            self.counts = np.zeros((0, len(C)), dtype=np.int64)
        self.owner = np.repeat(np.arange(self.n), sizes)
        self.age = self.ref_day[self.owner] - self.days  # 0 = the reference day
        # the RECENCY instants, a row each, read in one pass
        self._instants = (
            np.fromiter(
                (x for a in aggregates for x in (a.first_seen, a.last_activity, a.last_purchase)),
                dtype=np.int64,
                count=3 * self.n,
            )
            .reshape(self.n, 3)
            .T
        )
        self.first_seen, self.last_activity, self.last_purchase = self._instants
        self.is_paid = np.fromiter(
            (a.level == "paid" for a in aggregates), dtype=np.float64, count=self.n
        )
        self._windows = self._window_sums()
        self._other_gaps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def in_window(self, days: int) -> np.ndarray:
        inside: np.ndarray = (self.age >= 0) & (self.age < days)
        return inside

    def active_days(self, days: int) -> np.ndarray:
        """Tiles with any activity event among the last ``days`` days, per customer."""
        active = self.in_window(days) & (self.counts[:, ACTIVITY_COLUMNS].sum(axis=1) > 0)
        counted: np.ndarray = np.bincount(
            self.owner, weights=active.astype(np.float64), minlength=self.n
        )
        return counted

    def _window_sums(self) -> dict[int, np.ndarray]:
        """Counter sums for every window in WINDOW_DAYS, one row per customer.

        The sums are exact whichever way they are added (integer counters, sums far below
        2**53), so the way is picked by size. For a few customers (the API's lookups) a
        0/1 matrix of (customer, window) x tile, times the tiles' counters: ~6 numpy calls,
        ~6 µs for one customer's ~25 tiles. Above that, in one pass over the tiles: each
        tile is added to the bucket between the two windows it first falls in (one
        ``bincount`` per counter, ~20 µs fixed, cheapest for a worker's batch), then the
        buckets are accumulated."""
        buckets = len(WINDOW_DAYS)
        cells = self.n * buckets
        if cells * self.age.size <= _SMALL_PRODUCT:
            inside = (self.age >= 0) & (self.age < _WINDOW_EDGES[:, None])  # (window, tile)
            mine = self.owner == np.arange(self.n)[:, None]  # (customer, tile)
            member = (mine[:, None, :] & inside).reshape(cells, -1).astype(np.float64)
            # + 0.0: an empty window sums to 0.0 as below, never -0.0 (0.0 x a negative)
            sums = member @ self.counts.astype(np.float64) + 0.0
            cumulative = sums.reshape(self.n, buckets, -1)
        else:
            bucket = np.searchsorted(_WINDOW_EDGES, self.age, side="right")
            keep = (self.age >= 0) & (bucket < buckets)
            key = self.owner[keep] * buckets + bucket[keep]
            kept = self.counts[keep]
            sums = np.empty((cells, kept.shape[1]), dtype=np.float64)
            for column in range(kept.shape[1]):
                sums[:, column] = np.bincount(key, weights=kept[:, column], minlength=cells)
            cumulative = np.cumsum(sums.reshape(self.n, buckets, -1), axis=1)
        self._cumulative = cumulative
        return {days: cumulative[:, i, :] for i, days in enumerate(WINDOW_DAYS)}

    def window_sums(
        self, windows: Sequence[int] | np.ndarray, counters: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Several window sums at once: column j is counter ``counters[j]`` summed over
        ``WINDOW_DAYS[windows[j]]`` days, one row per customer (float64)."""
        gathered: np.ndarray = self._cumulative[:, windows, counters]
        return gathered

    def window_totals(self, windows: Sequence[int] | np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Several sums of counters at once: column j is the counters weighted by row j of
        ``weights`` (shape (len(windows), counters); 0/1 in practice) summed over
        ``WINDOW_DAYS[windows[j]]`` days, one row per customer (float64)."""
        totals: np.ndarray = (self._cumulative[:, windows, :] * weights).sum(axis=2)
        return totals

    def window(self, days: int) -> np.ndarray:
        """Counter sums over the last ``days`` days, one row per customer (float64)."""
        return self._windows[days]

    def count(self, counter: str, days: int) -> np.ndarray:
        column: np.ndarray = self.window(days)[:, C[counter]]
        return column

    def activity_events(self, days: int) -> np.ndarray:
        """Activity events (every activity counter) over the last ``days`` days."""
        column: np.ndarray = self._activity[:, WINDOW_DAYS.index(days)]
        return column

    @cached_property
    def _activity(self) -> np.ndarray:
        # every window at once: (customers, windows)
        totals: np.ndarray = self._cumulative[:, :, ACTIVITY_COLUMNS].sum(axis=2)
        return totals

    def days_since(self, when: np.ndarray) -> np.ndarray:
        """Days from ``when`` to t; where ``when`` is unknown, days since first seen."""
        known = np.where(when == NEVER, self.first_seen, when)
        return np.maximum(self.t - known, 0.0) / DAY_SECONDS

    def recency(self, scalar: Recency) -> np.ndarray:
        """:meth:`days_since` of one of the stored instants (the three computed together,
        once per context)."""
        days: np.ndarray = self._recency[RECENCY.index(scalar)]
        return days

    @cached_property
    def _recency(self) -> np.ndarray:
        return self.days_since(self._instants)

    @cached_property
    def purchase_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Per customer: mean and coefficient of variation of the gaps (days) between
        consecutive days with a purchase in the last 90 days (0 with fewer than 2 gaps)."""
        mean, cv, _ = self.purchase_gap_stats(90)
        return mean, cv

    def purchase_days(self, days: int) -> np.ndarray:
        """Days with at least one purchase among the last ``days``, per customer."""
        return self.purchase_gap_stats(days)[2]

    def purchase_gap_stats(self, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per customer, over the last ``days`` days: mean and coefficient of variation of
        the gaps (days) between consecutive purchase days (0 with fewer than 2 gaps), and
        the number of purchase days. The windows of :data:`GAP_WINDOWS` (those the
        features use) are computed together, once; any other on its own."""
        if days in GAP_WINDOWS:
            mean, cv, count = self._gap_windows
            w = GAP_WINDOWS.index(days)
            return mean[w], cv[w], count[w]
        if days not in self._other_gaps:
            mean, cv, count = self._gap_stats((days,))
            self._other_gaps[days] = mean[0], cv[0], count[0]
        return self._other_gaps[days]

    @cached_property
    def _gap_windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._gap_stats(GAP_WINDOWS)

    def _gap_stats(self, windows: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`purchase_gap_stats` of several windows in one pass: each window's
        purchase days, by customer then day, one after the other, keyed by (window,
        customer); each key's gaps are added in the same order as for that window alone.
        Arrays of shape (windows, customers)."""
        cells = len(windows) * self.n
        rows = np.flatnonzero(self.counts[:, C["purchase"]] > 0)
        rows = rows[np.lexsort((self.days[rows], self.owner[rows]))]
        age = self.age[rows]
        inside = (age >= 0) & (age < np.asarray(windows)[:, None])  # (windows, rows)
        window, position = np.nonzero(inside)  # window-major: each window's rows in order
        order = rows[position]
        key = window * self.n + self.owner[order]
        mean = np.zeros(cells)
        cv = np.zeros(cells)
        count = np.bincount(key, minlength=cells).astype(np.float64)
        shape = (len(windows), self.n)
        if key.size < 2:
            return mean.reshape(shape), cv.reshape(shape), count.reshape(shape)
        when = self.days[order].astype(np.float64)
        same = key[1:] == key[:-1]
        gaps, gap_key = (when[1:] - when[:-1])[same], key[1:][same]
        n_gaps = np.bincount(gap_key, minlength=cells).astype(np.float64)
        total = np.bincount(gap_key, weights=gaps, minlength=cells)
        squares = np.bincount(gap_key, weights=gaps**2, minlength=cells)
        has = n_gaps >= 2
        mean[has] = total[has] / n_gaps[has]
        std = np.sqrt(np.maximum(squares[has] / n_gaps[has] - mean[has] ** 2, 0.0))
        cv[has] = std / mean[has]
        return mean.reshape(shape), cv.reshape(shape), count.reshape(shape)

    def observed_days(self, days: int) -> np.ndarray:
        """Days of the last ``days`` the customer has been known for (at least 1)."""
        known: np.ndarray = np.clip(self.recency("first_seen"), 1.0, float(days))
        return known


class CustomerContext:
    """:class:`FeatureContext` for one customer at time ``t``: the same values, as Python
    floats (a feature function given this context returns a float).

    Cost: ~12 numpy calls whatever the number of tiles (the window sums as in
    :class:`FeatureContext` for a few customers, then plain lists), ~15 µs; each value
    asked then costs ~0.1-2 µs of Python."""

    n = 1

    def __init__(self, aggregates: CustomerAggregates, t: int) -> None:
        self.t = float(t)
        ref_day = (t - 1) // DAY_SECONDS  # the day holding the last instant before t
        self.first_seen = aggregates.first_seen
        self.last_activity = aggregates.last_activity
        self.last_purchase = aggregates.last_purchase
        self.is_paid = float(aggregates.level == "paid")
        days, counts = aggregates.tile_days(), aggregates.tile_counts()
        age = ref_day - days  # 0 = the reference day
        inside = (age >= 0) & (age < _WINDOW_EDGES[:, None])  # (window, tile)
        # + 0.0: an empty window sums to 0.0, never -0.0 (as FeatureContext)
        cumulative: list[list[float]] = (inside.astype(np.float64) @ counts + 0.0).tolist()
        self.cumulative = cumulative  # [window index][counter]: the window sums
        self._windows = dict(zip(WINDOW_DAYS, cumulative, strict=True))
        self._days: list[int] = days.tolist()
        self._ages: list[int] = age.tolist()
        self._activity: list[int] = np.add.reduce(counts[:, _ACTIVITY_INDEX], axis=1).tolist()
        self._purchases: list[int] = counts[:, _PURCHASE].tolist()
        self._gaps: dict[int, tuple[float, float, float]] = {}

    def window(self, days: int) -> list[float]:
        """Counter sums over the last ``days`` days (a window of :data:`WINDOW_DAYS`)."""
        return self._windows[days]

    def count(self, counter: str, days: int) -> float:
        return self._windows[days][C[counter]]

    def activity_events(self, days: int) -> float:
        """Activity events (every activity counter) over the last ``days`` days."""
        # integer-valued floats: the sum is exact, as FeatureContext's
        return float(sum(_ACTIVITY_OF(self._windows[days])))

    def active_days(self, days: int) -> float:
        """Tiles with any activity event among the last ``days`` days."""
        return float(
            sum(
                1
                for age, events in zip(self._ages, self._activity, strict=True)
                if 0 <= age < days and events > 0
            )
        )

    def days_since(self, when: int) -> float:
        """Days from ``when`` to t; where ``when`` is unknown, days since first seen."""
        known = self.first_seen if when == NEVER else when
        return max(self.t - known, 0.0) / DAY_SECONDS

    def recency(self, scalar: Recency) -> float:
        """:meth:`days_since` of one of the stored instants."""
        return self.days_since(getattr(self, scalar))

    @property
    def purchase_gaps(self) -> tuple[float, float]:
        """Mean and coefficient of variation of the gaps between purchase days, 90 days."""
        mean, cv, _ = self.purchase_gap_stats(90)
        return mean, cv

    def purchase_days(self, days: int) -> float:
        """Days with at least one purchase among the last ``days``."""
        return self.purchase_gap_stats(days)[2]

    def purchase_gap_stats(self, days: int) -> tuple[float, float, float]:
        """As :meth:`FeatureContext.purchase_gap_stats`: mean and coefficient of variation
        of the gaps between consecutive purchase days (0 with fewer than 2 gaps), and the
        number of purchase days, over the last ``days`` days."""
        if days not in self._gaps:
            self._gaps[days] = gap_stats(self._purchase_days(days))
        return self._gaps[days]

    def _purchase_days(self, days: int) -> list[int]:
        """Tiles with a purchase in the window, by day (tiles of the same day in row
        order, as FeatureContext's stable sort)."""
        return sorted(
            day
            for day, age, purchases in zip(self._days, self._ages, self._purchases, strict=True)
            if purchases > 0 and 0 <= age < days
        )

    def observed_days(self, days: int) -> float:
        """Days of the last ``days`` the customer has been known for (at least 1)."""
        return min(max(self.recency("first_seen"), 1.0), float(days))


def gap_stats(days: Sequence[int]) -> tuple[float, float, float]:
    """Mean and coefficient of variation (std / mean) of the gaps between consecutive
    ``days`` (sorted), 0 and 0 with fewer than 2 gaps, and the number of days; the same
    IEEE operations as :meth:`FeatureContext.purchase_gap_stats`.

    >>> gap_stats([10, 13, 19]), gap_stats([10, 13]), gap_stats([])
    ((4.5, 0.3333333333333333, 3.0), (0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    """
    n_gaps = len(days) - 1
    if n_gaps < 2:
        return 0.0, 0.0, float(len(days))
    gaps = [later - earlier for earlier, later in itertools.pairwise(days)]
    # integer sums: exact, as the float sums they stand for
    mean = float(sum(gaps)) / n_gaps
    squares = float(sum(gap * gap for gap in gaps)) / n_gaps
    std = math.sqrt(max(squares - mean * mean, 0.0))
    cv = std / mean if mean else math.nan  # 0 / 0, as numpy
    return mean, cv, float(len(days))
