"""The point-in-time dataset builder: honest features (only the past) and labels (only the
future), censoring, exclusion of customers who already cancelled."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from core.aggregates import CustomerAggregates
from core.events import Cancellation, CancellationPayload, Event, Play, PlayPayload
from core.features import FEATURE_NAMES, feature_matrix
from offline.dataset import Dataset, build_dataset
from offline.simulator import SimulationConfig, simulate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HORIZON = 7


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def play(customer: str, when: datetime, seconds: float = 60.0, eid: str | None = None) -> Play:
    return Play(
        event_id=eid or f"{customer}-p-{when.isoformat()}",
        customer_id=customer,
        event_time=when,
        payload=PlayPayload(duration_s=seconds),
    )


def cancel(customer: str, when: datetime) -> Cancellation:
    return Cancellation(
        event_id=f"{customer}-x-{when.isoformat()}",
        customer_id=customer,
        event_time=when,
        payload=CancellationPayload(reason="price"),
    )


def by_time(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.event_time, e.event_id))


def rows_at(ds: Dataset, cutoff: datetime) -> dict[str, int]:
    """customer -> row index, for the rows of one cutoff."""
    t = int(cutoff.timestamp())
    return {ds.customer_ids[i]: i for i in np.flatnonzero(ds.cutoffs == t).tolist()}


# --- a tiny hand-built world ----------------------------------------------------------------


def tiny_world() -> list[Event]:
    events: list[Event] = []
    events += [play("a", day(d + 0.5)) for d in range(10)] + [cancel("a", day(12.5))]
    events += [play("b", day(d + 0.5)) for d in range(31)]  # active throughout; last event
    events += [play("c", day(d + 0.5)) for d in range(6)]  # goes silent after day 5
    events += [play("d", day(1.5)), cancel("d", day(3.5))]  # cancelled before the cutoff
    events += [play("e", day(11.5))]  # first seen after the cutoff
    events += [play("f", day(d + 0.5)) for d in range(6)] + [play("f", day(10), 999)]  # at c
    events += [play("g", day(d + 0.5)) for d in range(6)] + [play("g", day(10 + HORIZON))]
    return by_time(events)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("cancellation", {"a": 1, "b": 0, "c": 0, "f": 0, "g": 0}),
        ("inactivity", {"a": 0, "b": 0, "c": 1, "f": 1, "g": 0}),
        ("cancellation_or_inactivity", {"a": 1, "b": 0, "c": 1, "f": 1, "g": 0}),
    ],
)
def test_labels_on_a_hand_built_event_list(label: str, expected: dict[str, int]) -> None:
    ds = build_dataset(tiny_world(), [day(10), day(25)], HORIZON, label=label)  # type: ignore[arg-type]
    # day 25 + 7 > day 30.5 (the last event): censored. d cancelled before day 10; e came later.
    assert set(ds.cutoffs.tolist()) == {int(day(10).timestamp())}
    assert ds.customer_ids == ["a", "b", "c", "f", "g"]
    assert dict(zip(ds.customer_ids, ds.y.tolist(), strict=True)) == expected
    assert ds.y.dtype == np.int8 and ds.X.shape == (5, len(FEATURE_NAMES))
    assert ds.feature_names == FEATURE_NAMES and ds.label == label and ds.horizon_days == HORIZON


def test_an_event_at_the_cutoff_is_in_neither_features_nor_label() -> None:
    ds = build_dataset(tiny_world(), [day(10)], HORIZON, feature_names=["plays_30d", "plays_1d"])
    row = rows_at(ds, day(10))["f"]
    assert ds.X[row].tolist() == [6.0, 0.0]  # the play at exactly day 10 is not counted
    assert ds.y[row] == 1  # ... nor does it make f active after the cutoff


def test_a_customer_who_cancelled_before_the_cutoff_is_excluded() -> None:
    events = by_time([play("a", day(1)), cancel("a", day(2)), play("b", day(1)), play("b", day(9))])
    ds = build_dataset(events, [day(2), day(3)], 1, label="inactivity")
    assert rows_at(ds, day(2)) == {"a": 0, "b": 1}  # the cancellation at day 2 is not before it
    assert list(rows_at(ds, day(3))) == ["b"]


def test_censored_cutoffs_are_dropped() -> None:
    events = by_time([play("a", day(d)) for d in range(0, 21)])  # last event: day 20
    cutoffs = [day(5), day(13), day(13.5), day(30)]
    ds = build_dataset(events, cutoffs, HORIZON)
    assert sorted(set(ds.cutoffs.tolist())) == [int(day(5).timestamp()), int(day(13).timestamp())]
    # observed_until moves the end of observation: day 13.5 + 7 <= 21 is complete then
    later = build_dataset(events, cutoffs, HORIZON, observed_until=day(21))
    assert int(day(13.5).timestamp()) in later.cutoffs.tolist()
    assert int(day(30).timestamp()) not in later.cutoffs.tolist()
    assert len(build_dataset([], cutoffs, HORIZON)) == 0


def test_events_must_not_go_back_across_a_cutoff() -> None:
    events: list[Event] = [play("a", day(1)), play("a", day(5)), play("b", day(2))]
    with pytest.raises(ValueError, match="event-time order"):
        build_dataset(events, [day(3)], 1)
    # disorder between two cutoffs is harmless (the aggregates are order-free)
    shuffled = [play("a", day(1.5)), play("b", day(1)), play("a", day(5)), play("a", day(4))]
    ordered = by_time(list(shuffled))
    a = build_dataset(shuffled, [day(3)], 1, observed_until=day(9))
    b = build_dataset(ordered, [day(3)], 1, observed_until=day(9))
    assert a.customer_ids == ["a", "b"] and b.customer_ids == ["b", "a"]
    assert np.array_equal(a.X[[0, 1]], b.X[[1, 0]]) and a.y.tolist() == b.y[[1, 0]].tolist()


def test_naive_cutoffs_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build_dataset([], [datetime(2026, 1, 1)], 7)


# --- no leakage, on simulated data ----------------------------------------------------------

CONFIG = SimulationConfig(customers=220, days=63, seed=11)
CUT = CONFIG.start + timedelta(days=35)
CUTOFFS = [CONFIG.start + timedelta(days=d) for d in (21, 35, 42)]


LABELS = ("cancellation", "inactivity", "cancellation_or_inactivity", "no_purchase")


@pytest.fixture(scope="module")
def sim_events() -> list[Event]:
    return list(simulate(CONFIG))


@pytest.fixture(scope="module")
def base(sim_events: list[Event]) -> dict[str, Dataset]:
    """The unperturbed dataset for each label."""
    return {label: build(sim_events, label) for label in LABELS}


def build(events: list[Event], label: str = "cancellation_or_inactivity") -> Dataset:
    return build_dataset(by_time(events), CUTOFFS, 14, label=label, observed_until=CONFIG.end)  # type: ignore[arg-type]


def perturb(events: list[Event], rng: random.Random, when: str) -> list[Event]:
    """Remove, change and add events strictly after (or strictly before) CUT."""
    keep = [e for e in events if (e.event_time > CUT) != (when == "after")]
    touched = [e for e in events if (e.event_time > CUT) == (when == "after")]
    touched = [e for e in touched if rng.random() < 0.6]  # remove ~40 %
    touched = [
        msgspec.structs.replace(e, payload=PlayPayload(duration_s=rng.uniform(0, 900)))
        if isinstance(e, Play) and rng.random() < 0.5
        else e
        for e in touched
    ]
    customers = sorted({e.customer_id for e in events})
    lo, hi = (CUT, CONFIG.end) if when == "after" else (CONFIG.start, CUT)
    span = (hi - lo).total_seconds()
    for i in range(400):
        when_at = lo + timedelta(seconds=1 + rng.random() * (span - 2))
        customer = rng.choice([*customers, "NEW-1", "NEW-2"])
        added: Event = (
            cancel(customer, when_at) if i % 40 == 0 else play(customer, when_at, eid=f"add-{i}")
        )
        touched.append(added)
    return keep + touched


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_events_after_a_cutoff_never_change_its_features(
    sim_events: list[Event], base: dict[str, Dataset], seed: int
) -> None:
    ds = base["cancellation_or_inactivity"]
    other = build(perturb(sim_events, random.Random(seed), "after"))
    rows, other_rows = rows_at(ds, CUT), rows_at(other, CUT)
    assert len(rows) > 150 and list(rows) == list(other_rows)
    assert np.array_equal(ds.X[list(rows.values())], other.X[list(other_rows.values())])


@pytest.mark.parametrize("seed", [1, 2])
def test_events_before_a_cutoff_never_change_its_labels(
    sim_events: list[Event], base: dict[str, Dataset], seed: int
) -> None:
    perturbed = by_time(perturb(sim_events, random.Random(seed), "before"))
    for label in LABELS:
        other = build(perturbed, label)
        rows, other_rows = rows_at(base[label], CUT), rows_at(other, CUT)
        common = [c for c in rows if c in other_rows]
        assert len(common) > 150 and len(other_rows) > len(common)  # NEW-1/2 joined
        assert [base[label].y[rows[c]] for c in common] == [other.y[other_rows[c]] for c in common]


def test_features_equal_aggregates_of_the_events_before_the_cutoff(
    sim_events: list[Event], base: dict[str, Dataset]
) -> None:
    ds = base["cancellation_or_inactivity"]
    for cutoff in CUTOFFS[:2]:
        rows = rows_at(ds, cutoff)
        aggs: dict[str, CustomerAggregates] = {}
        for event in sim_events:
            if event.event_time < cutoff:
                aggs.setdefault(event.customer_id, CustomerAggregates(event.customer_id))
                aggs[event.customer_id].apply(event, 120)
        expected = feature_matrix([aggs[c] for c in rows], int(cutoff.timestamp()))
        assert np.array_equal(ds.X[list(rows.values())], expected)


def test_labels_agree_with_a_brute_force_count(
    sim_events: list[Event], base: dict[str, Dataset]
) -> None:
    cancel_ds, idle_ds = base["cancellation"], base["inactivity"]
    either, no_purchase = base["cancellation_or_inactivity"], base["no_purchase"]
    horizon = timedelta(days=14)
    for cutoff in CUTOFFS[:2]:
        cancelled_before = {
            e.customer_id for e in sim_events if e.type == "cancellation" and e.event_time < cutoff
        }
        seen_before = {e.customer_id for e in sim_events if e.event_time < cutoff}
        window = [e for e in sim_events if cutoff < e.event_time <= cutoff + horizon]
        active = {e.customer_id for e in window}
        cancelling = {e.customer_id for e in window if e.type == "cancellation"}
        buying = {e.customer_id for e in window if e.type == "purchase"}
        rows = rows_at(cancel_ds, cutoff)
        assert set(rows) == seen_before - cancelled_before
        for customer, row in rows.items():
            assert cancel_ds.y[row] == (customer in cancelling)
            assert idle_ds.y[row] == (customer not in active)
            assert either.y[row] == (customer in cancelling or customer not in active)
            assert no_purchase.y[row] == (customer not in buying)
    assert 0.02 < either.base_rate < 0.5 and cancel_ds.base_rate > 0
    assert 0 < no_purchase.base_rate < 1


def test_select_and_base_rate() -> None:
    ds = build_dataset(tiny_world(), [day(10)], HORIZON)
    picked = ds.select(ds.y == 1)
    assert picked.base_rate == 1.0 and picked.customer_ids == ["a", "c", "f"]
    assert len(ds.select(np.array([], dtype=np.int64))) == 0
