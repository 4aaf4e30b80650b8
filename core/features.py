"""Every model feature, defined once, as a pure function of aggregates and a time ``t``.

``feature_matrix(aggregates, t)`` evaluates all features for many customers at once
(vectorised with numpy); the worker calls it for the customers a batch touched, the API
for one customer at request time, and the offline dataset builder for (customer, cutoff)
pairs. There is no other implementation, so online and offline values agree exactly. For
a single customer the same definitions are evaluated on a
:class:`~core.feature_context.CustomerContext` (plain Python floats instead of arrays of
one element), which gives the same values bit for bit at a fraction of the cost.

Conventions:

* ``t`` is epoch seconds (UTC). Only tiles of days up to the one containing the last
  instant before ``t`` count; a window of N days is that day and the N - 1 before it.
* Recency and tenure are in days (fractional) and grow with ``t``: a silent customer's
  features change without any new event.
* Money is in the event currency's major units (e.g. pounds), durations in minutes.
* Ratios of empty windows take a neutral value (documented per feature), never NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.aggregates import ACTIVITY_COUNTERS, C, CustomerAggregates
from core.feature_context import WINDOW_DAYS, CustomerContext, FeatureContext

# A feature's definition: arrays (one value per customer) from a FeatureContext, a float
# from a CustomerContext.
Context = FeatureContext | CustomerContext
FeatureFn = Callable[[Context], np.ndarray | float]
Direction = Literal[-1, 0, 1]

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "WINDOW_DAYS",
    "FeatureDef",
    "WindowRatio",
    "WindowSum",
    "feature_matrix",
]


@dataclass(frozen=True)
class FeatureDef:
    """One feature. ``silence`` says how it moves as time passes without any new event:
    ``1`` never falls, ``-1`` never rises, ``0`` either (or it does not move); the trainer
    can constrain a model's coefficients with it so that silence never lowers risk."""

    name: str
    description: str
    compute: FeatureFn
    silence: Direction = 0


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(numerator.shape, empty, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


@dataclass(frozen=True)
class WindowSum:
    """A feature that is one counter summed over a window, divided by ``scale``.
    :func:`feature_matrix` reads all such features in one gather."""

    counter: str
    days: int
    scale: float = 1.0

    def __call__(self, ctx: Context) -> np.ndarray | float:
        column: np.ndarray | float = ctx.count(self.counter, self.days) / self.scale
        return column


# the counters of activity events (every activity type), as a ratio's denominator
ACTIVITY: tuple[str, ...] = tuple(name for name, i in C.items() if i in ACTIVITY_COUNTERS)


@dataclass(frozen=True)
class WindowRatio:
    """A feature that is one counter divided by the sum of others over a window (``empty``
    when that sum is 0), then divided by ``scale``. :func:`feature_matrix` evaluates all
    such features in one pass."""

    numerator: str
    denominator: tuple[str, ...]
    days: int
    empty: float
    scale: float = 1.0

    def __call__(self, ctx: Context) -> np.ndarray:
        total = sum(np.asarray(ctx.count(counter, self.days)) for counter in self.denominator)
        numerator = np.asarray(ctx.count(self.numerator, self.days))
        column: np.ndarray = _ratio(numerator, np.asarray(total), self.empty) / self.scale
        return column


def _counter_in_window(counter: str, days: int) -> FeatureFn:
    return WindowSum(counter, days)


def _money_in_window(counter: str, days: int) -> FeatureFn:
    return WindowSum(counter, days, 100.0)  # cents -> major units


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
            silence=-1,
        )
        for name, counter in per_type
        for days in (1, 7, 30)
    ]


FEATURES: tuple[FeatureDef, ...] = (
    *_count_features(),
    FeatureDef(
        "mean_session_minutes_30d",
        "mean length of sessions ended in the last 30 days (0 without any)",
        WindowRatio("session_seconds", ("session_end",), 30, 0.0, 60.0),
    ),
    FeatureDef(
        "play_minutes_30d",
        "minutes of items played in the last 30 days",
        WindowSum("play_seconds", 30, 60.0),
    ),
    FeatureDef(
        "like_share_30d",
        "likes / (likes + dislikes) over 30 days (0.5 without any)",
        WindowRatio("like", ("like", "dislike"), 30, 0.5),
    ),
    FeatureDef(
        "help_rate_30d",
        "help pages per activity event over 30 days (0 without activity)",
        WindowRatio("help", ACTIVITY, 30, 0.0),
    ),
    FeatureDef(
        "error_rate_30d",
        "error pages per activity event over 30 days (0 without activity)",
        WindowRatio("error", ACTIVITY, 30, 0.0),
    ),
    FeatureDef(
        "upgrades_90d", "plan upgrades in the last 90 days", _counter_in_window("upgrade", 90)
    ),
    FeatureDef(
        "downgrades_90d",
        "plan downgrades in the last 90 days",
        _counter_in_window("downgrade", 90),
    ),
    FeatureDef("is_paid", "1 on the paid plan, else 0", lambda ctx: ctx.is_paid),
    FeatureDef(
        "active_days_30d",
        "days with any activity event among the last 30",
        lambda ctx: ctx.active_days(30),
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
        lambda ctx: ctx.recency("last_activity"),
        silence=1,
    ),
    FeatureDef(
        "days_since_first_seen",
        "days since the customer's first event (tenure)",
        lambda ctx: ctx.recency("first_seen"),
        silence=1,
    ),
    FeatureDef("orders_30d", "purchases, last 30 days", _counter_in_window("purchase", 30), -1),
    FeatureDef("orders_90d", "purchases, last 90 days", _counter_in_window("purchase", 90), -1),
    FeatureDef(
        "revenue_30d",
        "amount spent in the last 30 days",
        _money_in_window("revenue_cents", 30),
        silence=-1,
    ),
    FeatureDef(
        "revenue_90d",
        "amount spent in the last 90 days",
        _money_in_window("revenue_cents", 90),
        silence=-1,
    ),
    FeatureDef(
        "items_30d", "items bought in the last 30 days", _counter_in_window("items", 30), -1
    ),
    FeatureDef(
        "items_90d", "items bought in the last 90 days", _counter_in_window("items", 90), -1
    ),
    FeatureDef(
        "mean_order_value_90d",
        "mean purchase amount over 90 days (0 without purchases)",
        WindowRatio("revenue_cents", ("purchase",), 90, 0.0, 100.0),
    ),
    FeatureDef("refunds_90d", "refunds in the last 90 days", _counter_in_window("refund", 90), -1),
    FeatureDef(
        "refund_share_90d",
        "refunded amount / amount spent over 90 days (0 without purchases)",
        WindowRatio("refund_cents", ("revenue_cents",), 90, 0.0),
    ),
    FeatureDef(
        "days_since_last_purchase",
        "days since the last purchase (since first seen when there was none)",
        lambda ctx: ctx.recency("last_purchase"),
        silence=1,
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


def _transaction_features() -> list[FeatureDef]:
    """Purchase history over up to a year: frequency, spend, regularity, basket. The
    365-day windows see at most ``CHURN_RETENTION_DAYS`` days. The ratios over 365 days
    only move when a purchase leaves the window."""

    def per_order(counter: str, days: int, scale: float = 1.0) -> FeatureFn:
        return WindowRatio(counter, ("purchase",), days, 0.0, scale)

    def purchase_rate(ctx: Context) -> np.ndarray | float:
        rate: np.ndarray | float = ctx.purchase_days(365) / ctx.observed_days(365)
        return rate

    return [
        *(
            FeatureDef(f"{name}_{d}d", describe.format(d=d), window(counter, d), silence=-1)
            for name, describe, window, counter in (
                ("orders", "purchases, last {d} days", _counter_in_window, "purchase"),
                ("revenue", "amount spent in the last {d} days", _money_in_window, "revenue_cents"),
            )
            for d in (180, 365)
        ),
        FeatureDef(
            "purchase_days_365d",
            "days with a purchase among the last 365",
            lambda ctx: ctx.purchase_days(365),
            silence=-1,
        ),
        FeatureDef(
            "mean_purchase_gap_days_365d",
            "mean days between purchase days over 365 days (0 with fewer than 3 purchase days)",
            lambda ctx: ctx.purchase_gap_stats(365)[0],
        ),
        FeatureDef(
            "purchase_gap_cv_365d",
            "irregularity of purchases: std / mean of the gaps between purchase days, 365 days",
            lambda ctx: ctx.purchase_gap_stats(365)[1],
        ),
        FeatureDef(
            "purchase_rate_365d",
            "purchase days per day known, over the last 365 days (or since first seen)",
            purchase_rate,
            silence=-1,
        ),
        FeatureDef(
            "purchases_missed",
            "days since the last purchase times the purchase rate: the purchase days the "
            "customer's own pace says should have happened during the current silence "
            "(rises with silence until a purchase leaves the 365-day window)",
            lambda ctx: ctx.recency("last_purchase") * purchase_rate(ctx),
            silence=1,
        ),
        FeatureDef(
            "mean_order_value_365d",
            "mean purchase amount over 365 days (0 without purchases)",
            per_order("revenue_cents", 365, 100.0),
        ),
        FeatureDef(
            "lines_per_order_365d",
            "order lines per purchase over 365 days: basket breadth (0 without lines)",
            per_order("purchase_lines", 365),
        ),
        FeatureDef(
            "items_per_line_365d",
            "items per order line over 365 days: bulk buying (0 without lines)",
            WindowRatio("items", ("purchase_lines",), 365, 0.0),
        ),
        FeatureDef(
            "mean_unit_price_365d",
            "mean unit price of the order lines over 365 days (0 without lines)",
            WindowRatio("unit_price_cents", ("purchase_lines",), 365, 0.0, 100.0),
        ),
        FeatureDef(
            "refunds_365d",
            "refunds in the last 365 days",
            _counter_in_window("refund", 365),
            silence=-1,
        ),
        FeatureDef(
            "refund_share_365d",
            "refunded amount / amount spent over 365 days (0 without purchases)",
            WindowRatio("refund_cents", ("revenue_cents",), 365, 0.0),
        ),
    ]


FEATURES = (*FEATURES, *_transaction_features())
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

# The features that carry information on transaction data (purchases and refunds only):
# what a model trained on such data uses.
TRANSACTION_FEATURE_NAMES: tuple[str, ...] = (
    "days_since_first_seen",
    "days_since_last_purchase",
    "orders_30d",
    "orders_90d",
    "revenue_90d",
    *(f.name for f in _transaction_features()),
)
_BY_NAME: Mapping[str, FeatureDef] = {f.name: f for f in FEATURES}


def silence_direction(name: str) -> Direction:
    """How feature ``name`` moves as time passes without events (see :class:`FeatureDef`).

    >>> silence_direction("days_since_last_purchase"), silence_direction("orders_90d")
    (1, -1)
    """
    return _BY_NAME[name].silence


def feature_matrix(
    aggregates: Sequence[CustomerAggregates],
    t: int | Sequence[int] | np.ndarray,
    names: Sequence[str] = FEATURE_NAMES,
) -> np.ndarray:
    """Features of each customer at ``t`` (one time, or one per customer), in ``names``
    order: an array of shape (customers, features), float64.

    Cost: ~8 µs per customer in a batch of 200; for a batch the fixed cost of ~70 small
    numpy calls matters, so features of the same kind are evaluated together: the window
    sums in one gather, the window ratios in one division (:func:`_plan`), and
    :class:`FeatureContext` computes what several features share once (window sums,
    recency, purchase gaps of both windows). A single customer (an API lookup) is
    evaluated by :func:`feature_row` instead: ~40 µs for ~25 day tiles, where the
    vectorised evaluation costs ~110 µs.

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
    times = np.asarray(t, dtype=np.int64)
    if n == 1 and times.size == 1:
        return np.asarray([feature_row(aggregates[0], int(times.reshape(-1)[0]), names)])
    times = np.full(n, times) if times.ndim == 0 else np.broadcast_to(times, (n,))
    ctx = FeatureContext(aggregates, times)
    out = np.empty((n, len(names)), dtype=np.float64)
    plan = _plan(tuple(names))
    if plan.sums:
        sums = plan.sums
        out[:, sums.columns] = ctx.window_sums(sums.windows, sums.counters) / sums.scales
    if plan.ratios:
        ratios = plan.ratios
        numerator = ctx.window_sums(ratios.windows, ratios.counters)
        denominator = ctx.window_totals(ratios.windows, ratios.denominators)
        ratio = np.empty_like(numerator)
        ratio[:] = ratios.empty
        np.divide(numerator, denominator, out=ratio, where=denominator > 0)  # as _ratio
        out[:, ratios.columns] = ratio / ratios.scales
    for column, name in plan.others:
        out[:, column] = _BY_NAME[name].compute(ctx)
    return out


@dataclass(frozen=True)
class _Gather:
    """Features evaluated together: output columns, window indexes (into WINDOW_DAYS) and
    counter indexes, one each per feature; for ratios also the denominators' counters (a
    0/1 row per feature) and the empty values."""

    columns: np.ndarray
    windows: np.ndarray
    counters: np.ndarray
    scales: np.ndarray
    denominators: np.ndarray
    empty: np.ndarray

    def __len__(self) -> int:
        return len(self.columns)


@dataclass(frozen=True)
class _Plan:
    sums: _Gather
    ratios: _Gather
    others: list[tuple[int, str]]


@functools.lru_cache(maxsize=64)
def _plan(names: tuple[str, ...]) -> _Plan:
    """How :func:`feature_matrix` evaluates ``names``: the plain window sums in one gather,
    the window ratios in one pass, then each other feature on its own.

    The ratios' results are those of each :class:`WindowRatio` called alone, bit for bit:
    the same division, where and scale per element, and window sums of integer counters
    are exact in any order."""
    sums: list[tuple[int, WindowSum]] = []
    ratios: list[tuple[int, WindowRatio]] = []
    others: list[tuple[int, str]] = []
    for column, name in enumerate(names):
        compute = _BY_NAME[name].compute
        if isinstance(compute, WindowSum):
            sums.append((column, compute))
        elif isinstance(compute, WindowRatio):
            ratios.append((column, compute))
        else:
            others.append((column, name))
    return _Plan(
        _Gather(
            _indexes(column for column, _ in sums),
            _indexes(WINDOW_DAYS.index(f.days) for _, f in sums),
            _indexes(C[f.counter] for _, f in sums),
            np.asarray([f.scale for _, f in sums], dtype=np.float64),
            np.zeros((len(sums), len(C))),
            np.zeros(len(sums)),
        ),
        _Gather(
            _indexes(column for column, _ in ratios),
            _indexes(WINDOW_DAYS.index(f.days) for _, f in ratios),
            _indexes(C[f.numerator] for _, f in ratios),
            np.asarray([f.scale for _, f in ratios], dtype=np.float64),
            np.asarray(
                [[float(c in f.denominator) for c in C] for _, f in ratios], dtype=np.float64
            ).reshape(len(ratios), len(C)),
            np.asarray([f.empty for _, f in ratios], dtype=np.float64),
        ),
        others,
    )


def _indexes(values: Iterable[int]) -> np.ndarray:
    return np.fromiter(values, dtype=np.intp)


def feature_row(
    aggregates: CustomerAggregates, t: int, names: Sequence[str] = FEATURE_NAMES
) -> list[float]:
    """The features of one customer at ``t``, in ``names`` order: the row
    :func:`feature_matrix` gives for this customer, bit for bit, computed with Python
    floats on a :class:`~core.feature_context.CustomerContext`.

    Cost: ~40 µs for a customer of ~25 day tiles (the context's ~12 numpy calls ~15 µs,
    then Python: ~0.3 µs per window feature, a few µs for recency, activity and the
    purchase gaps), against ~110 µs for the vectorised evaluation of one customer; ~1 µs
    more per 10 tiles. :func:`feature_matrix` uses it for a single customer.
    """
    ctx = CustomerContext(aggregates, t)
    cumulative = ctx.cumulative
    row = [0.0] * len(names)
    plan = _scalar_plan(tuple(names))
    for column, window, counter, scale in plan.sums:
        row[column] = cumulative[window][counter] / scale
    for column, window, counter, denominator, empty, scale in plan.ratios:
        sums = cumulative[window]
        total = 0
        for i in denominator:
            total += int(sums[i])  # exact, as the weighted sum of FeatureContext
        row[column] = (sums[counter] / total if total > 0 else empty) / scale
    for column, compute in plan.others:
        row[column] = float(compute(ctx))
    return row


@dataclass(frozen=True)
class _ScalarPlan:
    """:class:`_Plan` as Python values: sums (column, window, counter, scale), ratios
    (column, window, numerator, denominator counters, empty, scale), others (column,
    compute)."""

    sums: tuple[tuple[int, int, int, float], ...]
    ratios: tuple[tuple[int, int, int, tuple[int, ...], float, float], ...]
    others: tuple[tuple[int, FeatureFn], ...]


@functools.lru_cache(maxsize=64)
def _scalar_plan(names: tuple[str, ...]) -> _ScalarPlan:
    plan = _plan(names)
    sums, ratios = plan.sums, plan.ratios
    return _ScalarPlan(
        tuple(
            zip(
                sums.columns.tolist(),
                sums.windows.tolist(),
                sums.counters.tolist(),
                sums.scales.tolist(),
                strict=True,
            )
        ),
        tuple(
            zip(
                ratios.columns.tolist(),
                ratios.windows.tolist(),
                ratios.counters.tolist(),
                [tuple(np.flatnonzero(row).tolist()) for row in ratios.denominators],
                ratios.empty.tolist(),
                ratios.scales.tolist(),
                strict=True,
            )
        ),
        tuple((column, _BY_NAME[name].compute) for column, name in plan.others),
    )


def features_of(aggregates: CustomerAggregates, t: int) -> dict[str, float]:
    """All features of one customer at ``t``, by name."""
    return dict(zip(FEATURE_NAMES, feature_row(aggregates, t), strict=True))
