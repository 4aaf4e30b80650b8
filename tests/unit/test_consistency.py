"""The comparison maths of `churnstream verify`: SMAPE, tolerances, per-feature statistics,
state differences, the watermark and the customer ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from core.aggregates import CustomerAggregates
from core.customer_encoding import decode_customer, encode_scalars, encode_tile
from core.events import Event, Like, Purchase
from core.features import FEATURE_NAMES, feature_matrix
from offline.consistency import FeatureComparison, differs, smape, state_differences
from offline.verify import customer_ranges, watermark_mask
from tests import support_events as events_for_tests

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def like(i: int, days: float = 0, customer: str = "c1") -> Like:
    return events_for_tests.like(i, T0 + timedelta(days=days), customer)


def purchase(i: int, days: float, amount: float = 10.0) -> Purchase:
    return events_for_tests.purchase(i, T0 + timedelta(days=days), amount)


state = events_for_tests.aggregates_of


def round_trip(agg: CustomerAggregates) -> CustomerAggregates:
    """What the store writes and reads back for ``agg``."""
    fields = {b"m": encode_scalars(agg)}
    for day, counts, hashes, transactions, _ in agg.changed_tiles():
        fields[f"d:{day}".encode()] = encode_tile(counts, hashes, transactions)
    return decode_customer(agg.customer_id, fields).aggregates


# --- SMAPE and the tolerance --------------------------------------------------------------


def test_smape_is_zero_for_equal_values_symmetric_and_at_most_two() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=1000) * 10
    b = rng.normal(size=1000) * 10
    assert np.all(smape(a, a) == 0)
    assert np.allclose(smape(a, b), smape(b, a))
    assert np.all((smape(a, b) >= 0) & (smape(a, b) <= 2 + 1e-12))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0.0, 0.0, 0.0),  # both empty: equal, not 0/0
        (0.0, 5.0, 2.0),  # one side empty: the largest error
        (100.0, 110.0, 2 * 10 / 210),
        (-1.0, 1.0, 2.0),
        (np.nan, np.nan, 0.0),
        (np.nan, 1.0, 2.0),
    ],
)
def test_smape_values(a: float, b: float, expected: float) -> None:
    assert smape(np.array([a]), np.array([b]))[0] == pytest.approx(expected)


def test_differs_is_absolute_near_zero_and_relative_for_large_values() -> None:
    a = np.array([0.0, 0.0, 1e9, 1e9, 5.0, np.nan, np.nan])
    b = np.array([1e-10, 1e-8, 1e9 + 0.5, 1e9 + 10, 5.0, np.nan, 0.0])
    assert differs(a, b, tolerance=1e-9).tolist() == [False, True, False, True, False, False, True]


# --- per-feature statistics ------------------------------------------------------------------


def test_feature_comparison_over_chunks_equals_one_pass() -> None:
    rng = np.random.default_rng(5)
    expected = rng.integers(0, 5, size=(40, 3)).astype(float)
    actual = expected.copy()
    actual[7, 1] += 2.0
    actual[30, 2] = 0.0 if expected[30, 2] else 4.0
    one = FeatureComparison(["a", "b", "c"], tolerance=1e-9)
    rows = one.add(expected, actual)
    assert np.flatnonzero(rows).tolist() == [7, 30]
    chunked = FeatureComparison(["a", "b", "c"], tolerance=1e-9)
    for start in range(0, 40, 15):
        chunked.add(expected[start : start + 15], actual[start : start + 15])
    assert chunked.results() == one.results()
    by_name = {d.name: d for d in one.results()}
    assert (by_name["a"].mismatched, by_name["a"].max_abs_diff, by_name["a"].smape_percent) == (
        0,
        0.0,
        0.0,
    )
    assert by_name["b"].mismatched == 1 and by_name["b"].max_abs_diff == 2.0
    assert by_name["b"].smape_percent == pytest.approx(100 * 2 * 2 / (2 * expected[7, 1] + 2) / 40)
    assert by_name["c"].mismatched == 1 and by_name["c"].smape_percent == pytest.approx(
        100 * 2 / 40
    )
    assert all(d.customers == 40 for d in one.results())


def test_feature_comparison_rejects_matrices_of_other_shapes() -> None:
    comparison = FeatureComparison(["a", "b"], tolerance=0.0)
    with pytest.raises(ValueError, match="do not match 2 features"):
        comparison.add(np.zeros((3, 2)), np.zeros((3, 3)))


def test_features_of_a_stored_and_reloaded_state_are_identical() -> None:
    events: list[Event] = [like(i, i * 0.7) for i in range(30)]
    events += [purchase(i, i * 3.1, amount=9.99 + i) for i in range(10)]
    agg = state(events)
    back = round_trip(agg)
    t = int((T0 + timedelta(days=40)).timestamp())
    comparison = FeatureComparison(FEATURE_NAMES, tolerance=0.0)
    rows = comparison.add(feature_matrix([agg], t), feature_matrix([back], t))
    assert not rows.any()
    assert all(d.max_abs_diff == 0.0 for d in comparison.results())


# --- state differences -----------------------------------------------------------------------


def test_equal_states_have_no_differences_whatever_the_order_and_the_copies() -> None:
    events: list[Event] = [like(i, i * 0.5) for i in range(12)] + [purchase(1, 2.0)]
    forward = state(events)
    backward_with_copies = state(list(reversed(events)) + events[:5])
    assert state_differences(forward, backward_with_copies) == []
    assert state_differences(forward, round_trip(forward)) == []


def test_states_are_order_free_across_the_retention_edge() -> None:
    """Events further apart than the retention: whichever arrives first, the old ones
    leave no tile but set the same scalars (first seen, last activity and purchase,
    plan level)."""
    old_session = events_for_tests.session_start("s-old", T0, session_id="a", level="paid")
    events: list[Event] = [
        old_session,
        purchase(1, 1.0),
        like(2, 2.0),
        purchase(3, 200.0),  # 200 days later: the old tiles fall out of a 120-day retention
        purchase(4, 201.0),
    ]
    rng = np.random.default_rng(4)
    expected = state(events)
    assert expected.first_seen == int(T0.timestamp())
    assert expected.level == "paid"
    assert expected.last_activity == int((T0 + timedelta(days=2)).timestamp())
    assert sorted(expected.tile_days().tolist()) == [
        (int(T0.timestamp()) // 86_400) + d for d in (200, 201)
    ]
    for _ in range(30):
        order = [events[i] for i in rng.permutation(len(events))]
        assert state_differences(expected, state(order)) == [], [e.event_id for e in order]


def test_a_lost_event_is_named_by_day_counter_and_event_ids() -> None:
    events: list[Event] = [like(1), like(2), purchase(3, 1.0, amount=12.5)]
    lines = state_differences(state(events), state([events[0], events[2]]))
    assert lines == [
        "day 2026-03-01: like 2 expected, 1 actual",
        "day 2026-03-01: 1 event id(s) counted only in the expected state, 0 only in the actual",
    ]


def test_a_counter_changed_in_place_is_found_even_with_the_same_event_ids() -> None:
    agg = state([purchase(1, 0.0, amount=12.5)])
    tampered = round_trip(agg)
    tampered.counts[0, 16] += 1  # revenue_cents
    assert state_differences(agg, tampered) == [
        "day 2026-03-01: revenue_cents 1250 expected, 1251 actual"
    ]


def test_scalar_differences_are_named() -> None:
    start = events_for_tests.session_start("s1", T0, session_id="x", level="paid")
    agg = state([start])
    other = round_trip(agg)
    other.level = "free"
    assert state_differences(agg, other) == ["level: 'paid' expected, 'free' actual"]


def test_long_difference_lists_are_cut_with_a_count() -> None:
    agg = state([like(i, days=i) for i in range(20)])
    lines = state_differences(agg, CustomerAggregates("c1"), limit=5)
    assert len(lines) == 5
    assert lines[-1].startswith("... and ") and "more difference(s)" in lines[-1]


# --- the watermark and the customer ranges ---------------------------------------------------


def test_the_watermark_keeps_rows_at_or_below_their_partitions_fence_only() -> None:
    table = pa.table(
        {
            "topic": ["act", "act", "act", "tx", "tx", "import", "act"],
            "partition": [0, 0, 1, 0, 2, -1, 5],
            "offset": [10, 11, 0, 3, 0, -1, 0],
        }
    )
    fences = {("act", 0): 10, ("act", 1): -1, ("tx", 0): 3, ("tx", 2): 0}
    assert watermark_mask(table, fences).tolist() == [True, False, False, True, True, False, False]
    assert watermark_mask(table, {}).tolist() == [False] * 7


def test_customer_ranges_cover_every_customer_once_within_the_limit() -> None:
    ids = [f"c{i:03d}" for i in range(50)]
    counts = [(i * 7) % 11 + 1 for i in range(50)]
    ranges = customer_ranges(ids, counts, max_rows=20)
    covered = [c for first, last in ranges for c in ids if first <= c <= last]
    assert covered == ids
    for first, last in ranges:
        rows = sum(n for c, n in zip(ids, counts, strict=True) if first <= c <= last)
        assert rows <= 20
    assert customer_ranges(["a", "b"], [50, 1], max_rows=10) == [("a", "a"), ("b", "b")]
    assert customer_ranges([], [], max_rows=10) == []
