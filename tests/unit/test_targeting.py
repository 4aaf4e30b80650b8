"""The targeting arithmetic: value, expected loss, expected gain and the budgeted ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.features import feature_matrix
from core.settings import Settings
from core.targeting import (
    VALUE_INPUTS,
    Campaign,
    Valuation,
    customer_values,
    expected_gain,
    expected_loss,
    expected_spend,
    rank_contacts,
    value_of,
    with_value_inputs,
)
from offline.simulator import SimulationConfig, simulate

probability = st.floats(0.0, 1.0)
money = st.floats(0.0, 1e6, allow_nan=False)


@given(probability, money, money)
def test_more_value_never_lowers_expected_loss(p: float, value: float, more: float) -> None:
    assert expected_loss(p, value + more) >= expected_loss(p, value)


@given(money, probability, probability)
def test_more_risk_never_lowers_expected_loss(value: float, p: float, q: float) -> None:
    low, high = sorted((p, q))
    assert expected_loss(high, value) >= expected_loss(low, value)


@given(probability, money, money, st.floats(0.0, 1.0), st.floats(0.0, 100.0))
def test_more_value_never_lowers_the_gain(
    p: float, value: float, more: float, save_rate: float, incentive: float
) -> None:
    campaign = Campaign(contact_cost=1.0, incentive=incentive, save_rate=save_rate)
    assert expected_gain(p, value + more, campaign) >= expected_gain(p, value, campaign) - 1e-9


def test_gain_is_the_emp_profit_of_one_customer() -> None:
    """p x gamma x (CLV - d) - f, worked by hand for EMP's defaults."""
    campaign = Campaign()
    assert expected_gain(0.2, 200.0, campaign) == pytest.approx(0.2 * 0.3 * 190 - 1)
    # below the break-even risk contacting loses money
    break_even = 1.0 / (0.3 * 190.0)
    assert (
        expected_gain(break_even * 0.99, 200.0, campaign)
        < 0
        < expected_gain(break_even * 1.01, 200.0, campaign)
    )
    # a customer worth less than the incentive is never worth contacting
    assert expected_gain(1.0, 5.0, campaign) < 0


def test_campaign_refuses_nonsense() -> None:
    for bad in ({"contact_cost": -1.0}, {"incentive": float("nan")}, {"save_rate": 1.01}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Campaign(**bad)


def test_campaign_from_settings_follows_the_environment() -> None:
    settings = Settings(_env_file=None, contact_cost=2.5, retention_incentive=4, save_rate=0.5)
    assert Campaign.from_settings(settings) == Campaign(2.5, 4.0, 0.5)
    assert Campaign.from_settings(Settings(_env_file=None)) == Campaign(1.0, 10.0, 0.3)


def test_settings_refuse_an_unknown_plan_level() -> None:
    with pytest.raises(ValueError, match="gold"):
        Settings(_env_file=None, plan_values={"gold": 5.0})
    with pytest.raises(ValueError, match="finite"):
        Settings(_env_file=None, plan_values={"paid": -5.0})


@given(
    st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=40),
    st.floats(0.0, 200.0),
    st.integers(0, 50),
)
def test_ranking_is_positive_sorted_and_within_limits(
    gains: list[float], budget: float, max_contacts: int
) -> None:
    gain = np.array(gains)
    spend = 1.0 + np.abs(gain) / 10
    chosen = rank_contacts(gain, spend, budget=budget, max_contacts=max_contacts)
    assert len(chosen) <= max_contacts
    assert spend[chosen].sum() <= budget + 1e-6
    assert (gain[chosen] > 0).all()
    assert (np.diff(gain[chosen]) <= 0).all()
    # a prefix of the full positive ranking: nothing better was left out
    full = rank_contacts(gain, spend)
    assert chosen.tolist() == full[: len(chosen)].tolist()
    if len(chosen) < min(max_contacts, len(full)):  # stopped by the budget
        assert spend[full[: len(chosen) + 1]].sum() > budget


def test_expected_spend_counts_the_incentive_of_accepters_only() -> None:
    campaign = Campaign(contact_cost=2.0, incentive=10.0, save_rate=0.5)
    assert expected_spend(np.array([0.0, 1.0]), campaign).tolist() == [2.0, 7.0]


def test_value_is_spend_rate_times_horizon_or_the_plan_value() -> None:
    names = VALUE_INPUTS
    rows = np.array(
        [
            [365.0, 0.0, 400.0, 0.0],  # a year of spend: 1 a day
            [365.0, 0.0, 400.0, 1.0],  # the same on the paid plan: the plan's 200 is larger
            [0.0, 0.0, 10.0, 0.0],  # nothing spent, free plan
            [50.0, 0.0, 0.2, 0.0],  # first seen today: a rate over at least the horizon
            [50.0, 0.0, 45.0, 0.0],  # known for 45 days: 50 / 45 a day
            [365.0, 0.25, 400.0, 0.0],  # a quarter of the year's spend refunded
            [365.0, 1.6, 400.0, 0.0],  # refunds beyond the year's spend: nothing is left
            [365.0, -0.5, 400.0, 0.0],  # a share below 0 counts as no refund
        ]
    )
    valuation = Valuation(horizon_days=30, plan_values={"free": 0.0, "paid": 200.0},
                          retention_days=400)  # fmt: skip
    assert customer_values(rows, names, valuation).tolist() == [
        30.0, 200.0, 0.0, 50.0, round(50 / 45 * 30, 2), 22.5, 0.0, 30.0
    ]  # fmt: skip
    # features that see only 120 days: a year's sum is over 120 days at most
    short = Valuation(horizon_days=30, retention_days=120)
    assert customer_values(rows[:1], names, short).tolist() == [round(365 / 120 * 30, 2)]


def test_value_is_net_of_refunds_in_the_names_order() -> None:
    """Columns are found by name: the refund share is read wherever it stands."""
    names = ("is_paid", "days_since_first_seen", "refund_share_365d", "revenue_365d")
    rows = np.array([[0.0, 400.0, 0.5, 365.0]])
    valuation = Valuation(horizon_days=30, retention_days=400)
    assert customer_values(rows, names, valuation).tolist() == [15.0]


def _shop_customer(
    customer_id: str,
    start: datetime,
    purchases: list[tuple[int, float]],
    refunds: list[tuple[int, float]],
    paid: bool = False,
) -> Any:
    """A customer's aggregates from purchases and refunds (day offset, amount), upgraded to
    the paid plan on day 0 when ``paid``."""
    from core.aggregates import CustomerAggregates
    from core.events import (
        PlanChangePayload,
        Purchase,
        PurchasePayload,
        Refund,
        RefundPayload,
        Upgrade,
    )

    aggregates = CustomerAggregates(customer_id)
    events: list[Any] = []
    if paid:
        events.append(Upgrade(
            event_id=f"{customer_id}-up", customer_id=customer_id, event_time=start,
            payload=PlanChangePayload(from_level="free", to_level="paid")))  # fmt: skip
    for i, (day, amount) in enumerate(purchases):
        events.append(Purchase(
            event_id=f"{customer_id}-p{i}", customer_id=customer_id,
            event_time=start + timedelta(days=day),
            payload=PurchasePayload(order_id=f"o{i}", amount=amount, quantity=1)))  # fmt: skip
    for i, (day, amount) in enumerate(refunds):
        events.append(Refund(
            event_id=f"{customer_id}-r{i}", customer_id=customer_id,
            event_time=start + timedelta(days=day),
            payload=RefundPayload(order_id=f"c{i}", amount=amount, quantity=1)))  # fmt: skip
    for event in events:
        aggregates.apply(event)
    return aggregates


def test_a_fully_refunded_customer_is_worth_its_plan_value_only() -> None:
    """A big order refunded in full keeps no value: 0 on the free plan, the plan's value on
    the paid one; it never ranks above a customer who kept smaller purchases, by value or
    by expected loss at the same risk."""
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    refunded = _shop_customer("refunded", start, [(1, 77_183.60)], [(1, 77_183.60)])
    refunded_paid = _shop_customer(
        "refunded-paid", start, [(1, 77_183.60)], [(1, 77_183.60)], paid=True
    )
    kept = _shop_customer("kept", start, [(1, 40.0), (20, 60.0), (50, 25.0)], [])
    half = _shop_customer("half", start, [(1, 1_000.0)], [(30, 500.0)])
    t = int((start + timedelta(days=60)).timestamp())
    names = with_value_inputs(())
    x = feature_matrix([refunded, refunded_paid, kept, half], t, names)
    assert x[0, names.index("revenue_365d")] == pytest.approx(77_183.60)  # spent, then refunded
    assert x[0, names.index("refund_share_365d")] == pytest.approx(1.0)
    valuation = Valuation(horizon_days=90, plan_values={"free": 0.0, "paid": 200.0},
                          retention_days=400)  # fmt: skip
    values = customer_values(x, names, valuation)
    assert values[0] == 0.0
    assert values[1] == 200.0
    assert values[2] == round(125.0 / 90 * 90, 2)  # kept all: 125 over at least 90 days
    assert values[3] == round(500.0 / 90 * 90, 2)  # half refunded: 500 net
    for i, features in enumerate(x):
        assert value_of(dict(zip(names, features.tolist(), strict=True)), valuation) == values[i]
    p = np.full(4, 0.5)
    for key in (values, expected_loss(p, values), expected_gain(p, values, Campaign())):
        assert key[2] > key[0]
    order = rank_contacts(expected_gain(p, values, Campaign()), expected_spend(p, Campaign()))
    assert 2 in order.tolist() and 0 not in order.tolist()  # kept purchases: worth a contact


def test_value_from_the_worker_features_of_simulated_customers() -> None:
    """The value columns come from the same feature code as the model's, in any order."""
    config = SimulationConfig(customers=60, days=60, seed=3)
    from core.aggregates import CustomerAggregates

    states: dict[str, CustomerAggregates] = {}
    for event in simulate(config):
        states.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(event)
    aggregates = list(states.values())
    t = int(config.end.timestamp())
    names = with_value_inputs(("orders_30d", "is_paid"))
    assert names[:2] == ("orders_30d", "is_paid")
    together = customer_values(feature_matrix(aggregates, t, names), names, Valuation())
    alone = customer_values(feature_matrix(aggregates, t, VALUE_INPUTS), VALUE_INPUTS, Valuation())
    assert together.tolist() == alone.tolist()
    assert (together >= 0).all() and together.max() > 0
    paid = feature_matrix(aggregates, t, ["is_paid"])[:, 0] > 0.5
    assert (together[paid] >= 200.0).all()


def test_the_value_is_stored_with_the_score() -> None:
    from core.customer_encoding import decode_customer
    from core.scores import Score
    from core.store import score_fields

    score = Score("c1", 0.25, "medium", "v1", 1767225600.5, 1767220000, value=123.45)
    fields = {k.encode(): v for k, v in score_fields(score).items()}
    stored = decode_customer("c1", fields).score
    assert stored == score
    # a score without a value (not known: see core.targeting) reads back without one
    unvalued = Score("c1", 0.25, "medium", "v1", 1767225600.5, 1767220000)
    fields = {k.encode(): v for k, v in score_fields(unvalued).items()}
    legacy = decode_customer("c1", fields).score
    assert legacy is not None and legacy.value is None


@given(
    st.floats(-100.0, 1e7),
    st.floats(-1.0, 3.0),
    st.floats(0.0, 2000.0),
    st.sampled_from([0.0, 1.0]),
    st.floats(1.0, 365.0),
    st.integers(91, 800),
)
def test_one_customer_value_agrees_exactly_with_the_vectorised_one(
    spent: float, refunded: float, tenure: float, paid: float, horizon: float, retention: int
) -> None:
    valuation = Valuation(horizon_days=horizon, retention_days=retention,
                          plan_values={"free": 3.0, "paid": 250.0})  # fmt: skip
    features = {"revenue_365d": spent, "refund_share_365d": refunded,
                "days_since_first_seen": tenure, "is_paid": paid}  # fmt: skip
    row = np.array([[features[name] for name in VALUE_INPUTS]])
    assert value_of(features, valuation) == customer_values(row, VALUE_INPUTS, valuation)[0]


def test_plan_values_reach_child_processes_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo passes its settings to the commands it runs through the environment."""
    from core.settings_env import settings_environment

    mine = Settings(_env_file=None, plan_values={"free": 1.5, "paid": 150.0}, save_rate=0.25)
    for variable, value in settings_environment(mine).items():
        monkeypatch.setenv(variable, value)
    again = Settings(_env_file=None)
    assert again.plan_values == {"free": 1.5, "paid": 150.0} and again.save_rate == 0.25
