"""Feature definitions: exact windows, recency that grows with time, and the vectorised
evaluation agreeing with one-customer-at-a-time evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.aggregates import NEVER, C, CustomerAggregates
from core.feature_context import WINDOW_DAYS, CustomerContext, FeatureContext, gap_stats
from core.features import (
    FEATURE_NAMES,
    FEATURES,
    WindowRatio,
    WindowSum,
    feature_matrix,
    feature_row,
    features_of,
)
from offline.simulator import SimulationConfig, simulate
from tests.support_events import aggregates_of, like, purchase, session_start

T = datetime(2026, 3, 1, tzinfo=UTC)  # a midnight


def ts(when: datetime) -> int:
    return int(when.timestamp())


def test_window_edges_follow_days_before_t() -> None:
    # With t at midnight, the 7-day window is the 7 whole days before it.
    agg = aggregates_of(
        [
            like(0, T - timedelta(days=7, seconds=1)),
            like(1, T - timedelta(days=7) + timedelta(seconds=1)),
            like(2, T - timedelta(seconds=1)),
        ]
    )
    f = features_of(agg, ts(T))
    assert f["likes_7d"] == 2
    assert f["likes_1d"] == 1
    assert f["likes_30d"] == 3


def test_events_at_or_after_t_do_not_count() -> None:
    agg = aggregates_of([like(0, T - timedelta(days=1)), like(1, T + timedelta(hours=1))])
    assert features_of(agg, ts(T))["likes_7d"] == 1


def test_recency_and_tenure_grow_with_t_and_counts_never_grow_without_events() -> None:
    agg = aggregates_of(
        [
            like(0, T - timedelta(days=40)),
            like(1, T - timedelta(days=3)),
            purchase(0, T - timedelta(days=10)),
        ]
    )
    times = [ts(T + timedelta(days=d)) for d in range(0, 60, 3)]
    rows = feature_matrix([agg] * len(times), times)
    names = list(FEATURE_NAMES)
    for name in ("days_since_last_activity", "days_since_first_seen", "days_since_last_purchase"):
        assert (np.diff(rows[:, names.index(name)]) > 0).all(), name
    for name in FEATURE_NAMES:
        if name.endswith(("_1d", "_7d", "_30d", "_90d")) and not name.startswith(
            ("mean_", "purchase_gap", "like_share", "help_rate", "error_rate", "refund_share")
        ):
            assert (np.diff(rows[:, names.index(name)]) <= 0).all(), name


def test_purchase_regularity() -> None:
    regular = aggregates_of([purchase(i, T - timedelta(days=7 * i + 1)) for i in range(5)])
    irregular = aggregates_of(
        [purchase(i, T - timedelta(days=d)) for i, d in enumerate((1, 2, 3, 30, 60))]
    )
    f_regular, f_irregular = features_of(regular, ts(T)), features_of(irregular, ts(T))
    assert f_regular["mean_purchase_gap_days_90d"] == pytest.approx(7.0)
    assert f_regular["purchase_gap_cv_90d"] == pytest.approx(0.0)
    gaps = np.array([1.0, 1.0, 27.0, 30.0])  # between days 60, 30, 3, 2 and 1 before t
    assert f_irregular["purchase_gap_cv_90d"] == pytest.approx(gaps.std() / gaps.mean())
    assert f_regular["orders_30d"] == 5 and f_regular["revenue_30d"] == pytest.approx(50.0)


def test_plan_level_follows_the_latest_event_whatever_the_arrival_order() -> None:
    paid = session_start("s1", T - timedelta(days=1), session_id="a", level="paid")
    free = session_start("s0", T - timedelta(days=5), session_id="b", level="free")
    assert features_of(aggregates_of([paid, free]), ts(T))["is_paid"] == 1.0
    assert features_of(aggregates_of([free, paid]), ts(T))["is_paid"] == 1.0


def simulated_states(customers: int, days: int, seed: int) -> list[CustomerAggregates]:
    """The states of the simulator's customers from 2026-01-01, built event by event."""
    aggs: dict[str, CustomerAggregates] = {}
    config = SimulationConfig(
        customers=customers, days=days, seed=seed, start=datetime(2026, 1, 1, tzinfo=UTC)
    )
    for event in simulate(config):
        aggs.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(event)
    return list(aggs.values())


def test_vectorised_evaluation_equals_one_customer_at_a_time() -> None:
    customers = simulated_states(60, 45, seed=21)
    t = ts(datetime(2026, 2, 10, tzinfo=UTC))
    together = feature_matrix(customers, t)
    one_by_one = np.vstack([feature_matrix([c], t) for c in customers])
    assert np.array_equal(together, one_by_one)
    assert np.isfinite(together).all()
    assert together.any(axis=0).sum() > len(FEATURE_NAMES) * 0.8  # most features carry signal
    per_row_t = feature_matrix(customers, [t] * len(customers))
    assert np.array_equal(per_row_t, together)


def test_the_matrix_equals_every_feature_computed_on_its_own() -> None:
    """feature_matrix reads the plain window sums in one gather and the window ratios in
    one pass; each column must still equal its FeatureDef's own compute, bit for bit, for
    all features and for a subset in any order."""
    customers = simulated_states(80, 60, seed=23)
    t = ts(datetime(2026, 3, 5, tzinfo=UTC))
    ctx = FeatureContext(customers, np.full(len(customers), t, dtype=np.int64))
    alone = np.column_stack([f.compute(ctx) for f in FEATURES])
    assert np.array_equal(feature_matrix(customers, t), alone)
    subset = ["revenue_365d", "days_since_last_activity", "likes_7d", "help_rate_30d"]
    columns = [FEATURE_NAMES.index(name) for name in subset]
    assert np.array_equal(feature_matrix(customers, t, subset), alone[:, columns])
    assert sum(isinstance(f.compute, WindowSum) for f in FEATURES) >= 30
    assert sum(isinstance(f.compute, WindowRatio) for f in FEATURES) >= 10


def test_window_sums_of_one_customer_equal_those_of_a_batch_bit_for_bit() -> None:
    """FeatureContext adds one customer's tiles by a 0/1 matrix product and a batch's by
    bincount: the sums of every window must be the same bits, zeros included (0.0, never
    -0.0), also for a customer with negative counters and one without tiles in a window."""
    t = ts(datetime(2026, 3, 5, tzinfo=UTC))
    odd = CustomerAggregates("negative")
    odd.first_seen = odd.last_activity = t - 200 * 86_400
    odd.set_tile(t // 86_400 - 3, [-2, 0, -7], [])  # a window without tiles sums 0.0
    odd.set_tile(t // 86_400 - 100, [0, -1, 0, -5], [])
    customers = [*simulated_states(40, 60, seed=29), odd]
    batch = FeatureContext(customers, np.full(len(customers), t, dtype=np.int64))
    for i, customer in enumerate(customers):
        alone = FeatureContext([customer], np.full(1, t, dtype=np.int64))
        for days in WINDOW_DAYS:
            assert alone.window(days).tobytes() == batch.window(days)[i : i + 1].tobytes()
    assert (batch.window(1)[-1] == 0.0).all() and not np.signbit(batch.window(1)[-1]).any()
    assert batch.window(7)[-1, 0] == -2.0


def test_purchase_gap_statistics_of_any_window() -> None:
    """Gaps between purchase days: the features' windows (computed together) and any
    other (computed alone) follow the same definition."""
    agg = aggregates_of(
        [purchase(i, T - timedelta(days=d, hours=5)) for i, d in enumerate((0, 3, 9, 100))]
    )
    ctx = FeatureContext([agg], np.full(1, ts(T), dtype=np.int64))
    # purchase days 1, 4 and 10 days before T (gaps 3 and 6 days), and one 101 days before
    for days in (30, 90):
        mean, cv, count = ctx.purchase_gap_stats(days)
        assert (mean[0], cv[0], count[0]) == (4.5, 1.5 / 4.5, 3.0)
    mean, cv, count = ctx.purchase_gap_stats(365)  # gaps 3, 6 and 91
    assert count[0] == 4.0 and mean[0] == 100 / 3
    mean, cv, count = ctx.purchase_gap_stats(7)  # one gap only: 0
    assert (mean[0], cv[0], count[0]) == (0.0, 0.0, 2.0)


def test_a_customer_without_events_in_the_windows_has_finite_neutral_features() -> None:
    agg = aggregates_of([like(0, T - timedelta(days=100))])
    f = features_of(agg, ts(T))
    assert all(np.isfinite(v) for v in f.values())
    assert f["like_share_30d"] == 0.5 and f["mean_order_value_90d"] == 0.0


def random_tiled_states(customers: int, seed: int, t: int) -> list[CustomerAggregates]:
    """Customers with random tiles of every counter (purchases, refunds, negative
    corrections included) over the 400 days before ``t`` and a few after, random recency
    instants (some never) and plan levels; some without tiles at all."""
    rng = np.random.default_rng(seed)
    day = t // 86_400
    states = []
    for i in range(customers):
        agg = CustomerAggregates(f"r{i}")
        tiles = int(rng.integers(0, 60)) if i % 7 else 0
        for d in rng.choice(np.arange(day - 400, day + 3), size=tiles, replace=False).tolist():
            counts = rng.poisson(rng.uniform(0.0, 4.0), size=len(C)) * (rng.random(len(C)) < 0.6)
            if rng.random() < 0.05:
                counts[int(rng.integers(0, len(C)))] *= -1
            agg.set_tile(int(d), counts.tolist(), [])
        agg.first_seen = t - int(rng.integers(0, 500 * 86_400))
        agg.last_activity = NEVER if i % 5 == 0 else t - int(rng.integers(0, 90 * 86_400))
        agg.last_purchase = NEVER if i % 3 == 0 else t - int(rng.integers(0, 200 * 86_400))
        agg.level = "paid" if i % 2 else "free"
        states.append(agg)
    return states


def test_one_customer_rows_equal_their_rows_of_a_batch_bit_for_bit() -> None:
    """feature_matrix evaluates a single customer on a CustomerContext (Python floats) and
    several on a FeatureContext (arrays): every feature of every customer must be the same
    bits either way, for the simulator's customers and random tiles of every counter."""
    t = ts(datetime(2026, 3, 5, 7, tzinfo=UTC))
    customers = [*simulated_states(60, 70, seed=31), *random_tiled_states(300, 37, t)]
    batch = feature_matrix(customers, t)
    assert (batch != 0).any(axis=0).all()  # every feature is exercised
    rows = np.asarray([feature_row(c, t) for c in customers])
    assert rows.tobytes() == batch.tobytes()
    single = np.vstack([feature_matrix([c], t) for c in customers])
    assert single.tobytes() == batch.tobytes()
    subset = ["purchase_gap_cv_365d", "likes_7d", "help_rate_30d", "active_days_30d"]
    columns = [FEATURE_NAMES.index(name) for name in subset]
    assert np.asarray([feature_row(c, t, subset) for c in customers]).tobytes() == (
        np.ascontiguousarray(batch[:, columns]).tobytes()
    )


def test_one_customer_context_equals_the_vectorised_one() -> None:
    t = ts(datetime(2026, 3, 5, 7, tzinfo=UTC))
    customers = random_tiled_states(120, 41, t)
    batch = FeatureContext(customers, np.full(len(customers), t, dtype=np.int64))
    for i, customer in enumerate(customers):
        one = CustomerContext(customer, t)
        for days in WINDOW_DAYS:
            assert np.asarray(one.window(days)).tobytes() == batch.window(days)[i].tobytes()
        for days in (7, 30, 90, 365, 400):
            assert one.purchase_gap_stats(days) == tuple(
                float(x[i]) for x in batch.purchase_gap_stats(days)
            )
            assert one.observed_days(days) == batch.observed_days(days)[i]
        assert one.active_days(30) == batch.active_days(30)[i]
        assert one.activity_events(28) == batch.activity_events(28)[i]
        assert one.recency("last_purchase") == batch.recency("last_purchase")[i]


def test_gap_statistics_of_sorted_days() -> None:
    mean = 100 / 3  # gaps of 3, 6 and 91 days
    cv = np.sqrt((9 + 36 + 91**2) / 3 - mean**2) / mean
    assert gap_stats([1, 4, 10, 101]) == (mean, cv, 4.0)
    assert gap_stats([5]) == (0.0, 0.0, 1.0)
    mean, cv, count = gap_stats([7, 7, 7])  # two gaps of 0 days: 0 / 0, as numpy gives
    assert (mean, count) == (0.0, 3.0) and np.isnan(cv)
