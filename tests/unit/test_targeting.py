"""The targeting arithmetic: value, expected loss, expected gain and the budgeted ranking."""

from __future__ import annotations

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
            [365.0, 400.0, 0.0],  # a year of spend: 1 a day
            [365.0, 400.0, 1.0],  # the same on the paid plan: the plan's 200 is larger
            [0.0, 10.0, 0.0],  # nothing spent, free plan
            [50.0, 0.2, 0.0],  # first seen today: a rate over at least the horizon
            [50.0, 45.0, 0.0],  # known for 45 days: 50 / 45 a day
        ]
    )
    valuation = Valuation(horizon_days=30, plan_values={"free": 0.0, "paid": 200.0},
                          retention_days=400)  # fmt: skip
    assert customer_values(rows, names, valuation).tolist() == [
        30.0, 200.0, 0.0, 50.0, round(50 / 45 * 30, 2)
    ]  # fmt: skip
    # features that see only 120 days: a year's sum is over 120 days at most
    short = Valuation(horizon_days=30, retention_days=120)
    assert customer_values(rows[:1], names, short).tolist() == [round(365 / 120 * 30, 2)]


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
    from core.scores import Score
    from core.store import decode_customer, score_fields

    score = Score("c1", 0.25, "medium", "v1", 1767225600.5, 1767220000, value=123.45)
    fields = {k.encode(): v.encode() for k, v in score_fields(score).items()}
    stored = decode_customer("c1", fields).score
    assert stored == score
    # a score written before values were kept reads back without one
    older = {k: v for k, v in fields.items() if k != b"value"}
    legacy = decode_customer("c1", older).score
    assert legacy is not None and legacy.value is None


@given(
    st.floats(-100.0, 1e7),
    st.floats(0.0, 2000.0),
    st.sampled_from([0.0, 1.0]),
    st.floats(1.0, 365.0),
    st.integers(91, 800),
)
def test_one_customer_value_agrees_exactly_with_the_vectorised_one(
    spent: float, tenure: float, paid: float, horizon: float, retention: int
) -> None:
    from core.targeting import value_of

    valuation = Valuation(horizon_days=horizon, retention_days=retention,
                          plan_values={"free": 3.0, "paid": 250.0})  # fmt: skip
    features = {"revenue_365d": spent, "days_since_first_seen": tenure, "is_paid": paid}
    row = np.array([[features[name] for name in VALUE_INPUTS]])
    assert value_of(features, valuation) == customer_values(row, VALUE_INPUTS, valuation)[0]


def test_plan_values_reach_child_processes_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo passes its settings to the commands it runs through the environment."""
    from churnstream.demo.worker_child import worker_env

    mine = Settings(_env_file=None, plan_values={"free": 1.5, "paid": 150.0}, save_rate=0.25)
    for variable, value in worker_env(mine).items():
        monkeypatch.setenv(variable, value)
    again = Settings(_env_file=None)
    assert again.plan_values == {"free": 1.5, "paid": 150.0} and again.save_rate == 0.25
