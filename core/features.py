"""Every model feature, defined once, as a pure function of aggregates and a time ``t``.

``feature_matrix(aggregates, t)`` evaluates all features for many customers at once
(vectorised with numpy); the worker calls it for the customers a batch touched, the API
for one customer at request time, and the offline dataset builder for (customer, cutoff)
pairs. There is no other implementation, so online and offline values agree exactly.

Conventions:

* ``t`` is epoch seconds (UTC). Only tiles of days up to the one containing the last
  instant before ``t`` count; a window of N days is that day and the N - 1 before it.
* Recency and tenure are in days (fractional) and grow with ``t``: a silent customer's
  features change without any new event.
* Money is in the event currency's major units (e.g. pounds), durations in minutes.
* Ratios of empty windows take a neutral value (documented per feature), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.aggregates import ACTIVITY_COUNTERS, DAY_SECONDS, NEVER, C, CustomerAggregates

FeatureFn = Callable[["_Context"], np.ndarray]

WINDOW_DAYS = (1, 7, 28, 30, 90)  # every window a feature below uses
_ACTIVITY_COLUMNS = list(ACTIVITY_COUNTERS)
_DENSE_LIMIT = 200_000  # one-hot matmul below this many cells, per-column bincount above


@dataclass(frozen=True)
class FeatureDef:
    name: str
    description: str
    compute: FeatureFn


class _Context:
    """Window sums and scalars of a group of customers, computed once and shared."""

    def __init__(self, aggregates: Sequence[CustomerAggregates], t: np.ndarray) -> None:
        self.n = len(aggregates)
        self.t = t.astype(np.float64)
        self.ref_day = (t - 1) // DAY_SECONDS  # the day holding the last instant before t
        sizes = np.fromiter((a.n_rows for a in aggregates), dtype=np.int64, count=self.n)
        self.ends = np.cumsum(sizes)
        self.starts = self.ends - sizes
        if self.ends.size and self.ends[-1]:
            self.days = np.concatenate([a.tile_days() for a in aggregates])
            self.counts = np.concatenate([a.tile_counts() for a in aggregates])
        else:
            self.days = np.zeros(0, dtype=np.int64)
            self.counts = np.zeros((0, len(C)), dtype=np.int64)
        self.owner = np.repeat(np.arange(self.n), sizes)
        self.age = self.ref_day[self.owner] - self.days  # 0 = the reference day
        self.first_seen = self._scalar(aggregates, "first_seen")
        self.last_activity = self._scalar(aggregates, "last_activity")
        self.last_purchase = self._scalar(aggregates, "last_purchase")
        self.is_paid = np.fromiter(
            (a.level == "paid" for a in aggregates), dtype=np.float64, count=self.n
        )
        self._windows = self._window_sums()
        self._activity: dict[int, np.ndarray] = {}

    def _scalar(self, aggregates: Sequence[CustomerAggregates], name: str) -> np.ndarray:
        return np.fromiter((getattr(a, name) for a in aggregates), dtype=np.int64, count=self.n)

    def in_window(self, days: int) -> np.ndarray:
        inside: np.ndarray = (self.age >= 0) & (self.age < days)
        return inside

    def _window_sums(self) -> dict[int, np.ndarray]:
        """Counter sums for every window in WINDOW_DAYS, in one pass over the tiles: each
        tile is added to the bucket between the two windows it first falls in, then the
        buckets are accumulated."""
        buckets = len(WINDOW_DAYS)
        bucket = np.searchsorted(np.asarray(WINDOW_DAYS), self.age, side="right")
        keep = (self.age >= 0) & (bucket < buckets)
        key = self.owner[keep] * buckets + bucket[keep]
        kept = self.counts[keep]
        sums = np.empty((self.n * buckets, kept.shape[1]), dtype=np.float64)
        for column in range(kept.shape[1]):
            sums[:, column] = np.bincount(key, weights=kept[:, column], minlength=self.n * buckets)
        cumulative = np.cumsum(sums.reshape(self.n, buckets, -1), axis=1)
        return {days: cumulative[:, i, :] for i, days in enumerate(WINDOW_DAYS)}

    def window(self, days: int) -> np.ndarray:
        """Counter sums over the last ``days`` days, one row per customer (float64)."""
        return self._windows[days]

    def count(self, counter: str, days: int) -> np.ndarray:
        column: np.ndarray = self.window(days)[:, C[counter]]
        return column

    def activity_events(self, days: int) -> np.ndarray:
        if days not in self._activity:
            self._activity[days] = self.window(days)[:, _ACTIVITY_COLUMNS].sum(axis=1)
        return self._activity[days]

    def days_since(self, when: np.ndarray) -> np.ndarray:
        """Days from ``when`` to t; where ``when`` is unknown, days since first seen."""
        known = np.where(when == NEVER, self.first_seen, when)
        return np.maximum(self.t - known, 0.0) / DAY_SECONDS

    @cached_property
    def purchase_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Per customer: mean and coefficient of variation of the gaps (days) between
        consecutive days with a purchase in the last 90 days (0 with fewer than 2 gaps)."""
        rows = np.flatnonzero(self.in_window(90) & (self.counts[:, C["purchase"]] > 0))
        mean = np.zeros(self.n)
        cv = np.zeros(self.n)
        if rows.size < 2:
            return mean, cv
        order = rows[np.lexsort((self.days[rows], self.owner[rows]))]
        owner, days = self.owner[order], self.days[order].astype(np.float64)
        same = owner[1:] == owner[:-1]
        gaps, gap_owner = (days[1:] - days[:-1])[same], owner[1:][same]
        n_gaps = np.bincount(gap_owner, minlength=self.n).astype(np.float64)
        total = np.bincount(gap_owner, weights=gaps, minlength=self.n)
        squares = np.bincount(gap_owner, weights=gaps**2, minlength=self.n)
        has = n_gaps >= 2
        mean[has] = total[has] / n_gaps[has]
        std = np.sqrt(np.maximum(squares[has] / n_gaps[has] - mean[has] ** 2, 0.0))
        cv[has] = std / mean[has]
        return mean, cv


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(numerator.shape, empty, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _counter_in_window(counter: str, days: int) -> FeatureFn:
    def compute(ctx: _Context) -> np.ndarray:
        return ctx.count(counter, days)

    return compute


def _count_features() -> list[FeatureDef]:
    per_type = (
        ("sessions", "session_start"),
        ("page_views", "page_view"),
        ("plays", "play"),
        ("likes", "like"),
        ("dislikes", "dislike"),
        ("friends_added", "add_friend"),
        ("playlist_adds", "add_to_playlist"),
        ("help_pages", "help"),
        ("error_pages", "error"),
    )
    return [
        FeatureDef(
            f"{name}_{days}d",
            f"{counter} events in the last {days} day(s)",
            _counter_in_window(counter, days),
        )
        for name, counter in per_type
        for days in (1, 7, 30)
    ]


FEATURES: tuple[FeatureDef, ...] = (
    *_count_features(),
    FeatureDef(
        "mean_session_minutes_30d",
        "mean length of sessions ended in the last 30 days (0 without any)",
        lambda ctx: (
            _ratio(ctx.count("session_seconds", 30), ctx.count("session_end", 30), 0.0) / 60.0
        ),
    ),
    FeatureDef(
        "play_minutes_30d",
        "minutes of items played in the last 30 days",
        lambda ctx: ctx.count("play_seconds", 30) / 60.0,
    ),
    FeatureDef(
        "like_share_30d",
        "likes / (likes + dislikes) over 30 days (0.5 without any)",
        lambda ctx: _ratio(
            ctx.count("like", 30), ctx.count("like", 30) + ctx.count("dislike", 30), 0.5
        ),
    ),
    FeatureDef(
        "help_rate_30d",
        "help pages per activity event over 30 days (0 without activity)",
        lambda ctx: _ratio(ctx.count("help", 30), ctx.activity_events(30), 0.0),
    ),
    FeatureDef(
        "error_rate_30d",
        "error pages per activity event over 30 days (0 without activity)",
        lambda ctx: _ratio(ctx.count("error", 30), ctx.activity_events(30), 0.0),
    ),
    FeatureDef(
        "upgrades_90d", "plan upgrades in the last 90 days", lambda ctx: ctx.count("upgrade", 90)
    ),
    FeatureDef(
        "downgrades_90d",
        "plan downgrades in the last 90 days",
        lambda ctx: ctx.count("downgrade", 90),
    ),
    FeatureDef("is_paid", "1 on the paid plan, else 0", lambda ctx: ctx.is_paid),
    FeatureDef(
        "active_days_30d",
        "days with any activity event among the last 30",
        lambda ctx: np.bincount(
            ctx.owner,
            weights=(
                ctx.in_window(30) & (ctx.counts[:, list(ACTIVITY_COUNTERS)].sum(axis=1) > 0)
            ).astype(np.float64),
            minlength=ctx.n,
        ),
    ),
    FeatureDef(
        "activity_trend",
        "log of (daily activity in the last 7 days + 1) / (daily activity in the 21 before + 1)",
        lambda ctx: (
            np.log1p(ctx.activity_events(7) / 7.0)
            - np.log1p((ctx.activity_events(28) - ctx.activity_events(7)) / 21.0)
        ),
    ),
    FeatureDef(
        "days_since_last_activity",
        "days since the last activity event (since first seen when there was none)",
        lambda ctx: ctx.days_since(ctx.last_activity),
    ),
    FeatureDef(
        "days_since_first_seen",
        "days since the customer's first event (tenure)",
        lambda ctx: ctx.days_since(ctx.first_seen),
    ),
    FeatureDef("orders_30d", "purchases, last 30 days", lambda ctx: ctx.count("purchase", 30)),
    FeatureDef("orders_90d", "purchases, last 90 days", lambda ctx: ctx.count("purchase", 90)),
    FeatureDef(
        "revenue_30d",
        "amount spent in the last 30 days",
        lambda ctx: ctx.count("revenue_cents", 30) / 100.0,
    ),
    FeatureDef(
        "revenue_90d",
        "amount spent in the last 90 days",
        lambda ctx: ctx.count("revenue_cents", 90) / 100.0,
    ),
    FeatureDef("items_30d", "items bought in the last 30 days", lambda ctx: ctx.count("items", 30)),
    FeatureDef("items_90d", "items bought in the last 90 days", lambda ctx: ctx.count("items", 90)),
    FeatureDef(
        "mean_order_value_90d",
        "mean purchase amount over 90 days (0 without purchases)",
        lambda ctx: _ratio(ctx.count("revenue_cents", 90), ctx.count("purchase", 90), 0.0) / 100.0,
    ),
    FeatureDef("refunds_90d", "refunds in the last 90 days", lambda ctx: ctx.count("refund", 90)),
    FeatureDef(
        "refund_share_90d",
        "refunded amount / amount spent over 90 days (0 without purchases)",
        lambda ctx: _ratio(ctx.count("refund_cents", 90), ctx.count("revenue_cents", 90), 0.0),
    ),
    FeatureDef(
        "days_since_last_purchase",
        "days since the last purchase (since first seen when there was none)",
        lambda ctx: ctx.days_since(ctx.last_purchase),
    ),
    FeatureDef(
        "mean_purchase_gap_days_90d",
        "mean days between purchase days over 90 days (0 with fewer than 3 purchase days)",
        lambda ctx: ctx.purchase_gaps[0],
    ),
    FeatureDef(
        "purchase_gap_cv_90d",
        "irregularity of purchases: std / mean of the gaps between purchase days, 90 days",
        lambda ctx: ctx.purchase_gaps[1],
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME: Mapping[str, FeatureDef] = {f.name: f for f in FEATURES}


def feature_matrix(
    aggregates: Sequence[CustomerAggregates],
    t: int | Sequence[int] | np.ndarray,
    names: Sequence[str] = FEATURE_NAMES,
) -> np.ndarray:
    """Features of each customer at ``t`` (one time, or one per customer), in ``names``
    order: an array of shape (customers, features), float64.

    >>> from datetime import UTC, datetime
    >>> from core.events import Like, ItemReactionPayload, Dislike
    >>> agg = CustomerAggregates("c1")
    >>> for i, cls in enumerate([Like, Like, Like, Dislike]):
    ...     _ = agg.apply(cls(event_id=f"e{i}", customer_id="c1",
    ...         event_time=datetime(2026, 1, 1 + i, 12, tzinfo=UTC),
    ...         payload=ItemReactionPayload()))
    >>> t = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp())
    >>> x = feature_matrix([agg], t, ["likes_7d", "likes_30d", "like_share_30d",
    ...                               "days_since_last_activity"])
    >>> x.round(2).tolist()
    [[1.0, 3.0, 0.75, 5.5]]
    """
    n = len(aggregates)
    times = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))
    ctx = _Context(aggregates, times)
    out = np.empty((n, len(names)), dtype=np.float64)
    for column, name in enumerate(names):
        out[:, column] = _BY_NAME[name].compute(ctx)
    return out


def features_of(aggregates: CustomerAggregates, t: int) -> dict[str, float]:
    """All features of one customer at ``t``, by name."""
    row = feature_matrix([aggregates], t)[0]
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))
