"""The offline targeting evaluation: hand-checked measures, their invariants, and the
figures a training run reports, recomputed independently from the events."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.targeting import Campaign, Valuation, customer_values
from offline.model_card import render_model_card
from offline.targeting_evaluation import (
    CURVE_SHARES,
    churned_value_reached,
    realized_profit,
    targeting_metrics,
)


def test_measures_on_a_hand_checked_case() -> None:
    # two cutoffs of four customers; at a 25 % budget one customer per cutoff is contacted
    y = np.array([1, 0, 1, 0, 0, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.6, 0.3, 0.1])
    value = np.array([10.0, 300.0, 500.0, 5.0, 50.0, 100.0, 400.0, 1.0])
    cutoffs = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    metrics = targeting_metrics(y, p, value, cutoffs, Campaign(), budgets=(0.25,))
    at = metrics["budgets"]["0.25"]
    # expected loss: cutoff 0 -> 0.8 x 300 = 240 (stays: 0); cutoff 1 -> 0.3 x 400 (churns)
    # p(churn): customer 0 (churns: 10) and customer 4 (stays: 0)
    # value: customer 2 (500, churns) and customer 6 (400, churns)
    assert at["churned_value"] == {"expected_loss": 400.0, "p_churn": 10.0, "value": 900.0}
    assert at["expected_loss_vs_p_churn"] == 40.0
    assert metrics["churned_value"] == 1010.0
    assert at["share_of_churned_value"]["expected_loss"] == round(400 / 1010, 4)
    # the profit curve starts at 0 and, contacting everyone, is the saved value of every
    # churner minus every contact
    curve = metrics["profit_curve"]["profit"]
    assert curve[0] == 0.0
    everyone = sum(0.3 * (v - 10) for v, churned in zip(value, y, strict=True) if churned) - 8
    assert curve[-1] == pytest.approx(everyone)
    assert metrics["best_profit"] == max(curve)
    assert metrics["best_share"] == CURVE_SHARES[curve.index(max(curve))]


@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.floats(0, 1), st.floats(0, 1000), st.integers(0, 2)),
        min_size=1,
        max_size=30,
    )
)
def test_reach_grows_with_the_budget_and_everyone_reaches_everything(
    rows: list[tuple[int, float, float, int]],
) -> None:
    y, p, value, cutoffs = (np.array(column) for column in zip(*rows, strict=True))
    y, value = y.astype(float), value.astype(float)
    total = float((y * value).sum())
    for key in (p * value, p, value):
        reached = [churned_value_reached(y, value, key, cutoffs, s) for s in (0.1, 0.5, 1.0)]
        assert reached == sorted(reached)
        assert reached[-1] == pytest.approx(total, abs=0.01)
        # expected loss ranks by the key itself: no ranking beats it on the churned
        # value when the key is the value of churners (a perfect oracle)
    oracle = churned_value_reached(y, value, y * value, cutoffs, 0.3)
    assert oracle >= churned_value_reached(y, value, p * value, cutoffs, 0.3) - 0.01
    nobody = realized_profit(y, value, p, cutoffs, 0.0, Campaign())
    assert nobody == 0.0


def test_a_training_run_on_the_simulator_reports_targeting_in_metrics_and_card() -> None:
    from offline.train import simulation_run

    run = simulation_run(customers=600, days=70, seed=4, horizon_days=14)
    targeting = run.metrics["targeting"]
    assert set(targeting["budgets"]) == {"0.05", "0.10", "0.20"}
    assert targeting["rows"] == len(run.valid)
    reached = targeting["budgets"]["0.10"]["churned_value"]
    assert reached["expected_loss"] >= reached["p_churn"] > 0
    assert len(targeting["profit_curve"]["profit"]) == len(CURVE_SHARES)
    card = render_model_card(run)
    assert "## Retention targeting" in card
    assert "| 10% |" in card and "best share to contact" in card


def test_online_retail_figures_recomputed_from_the_events() -> None:
    """The churned value each ranking reaches at 10 %, recomputed here from the raw events
    (spend less refunds in the year before the cutoff, at least 0, per day known, at least
    90, times 90), matches the report."""
    from offline.importers.online_retail import import_online_retail
    from offline.transactions import TransactionTrainingConfig, train_on_transactions
    from tests.support_data import online_retail_file

    events, _ = import_online_retail(online_retail_file())
    config = TransactionTrainingConfig(horizon_days=90, retention_days=400, with_boosting=False)
    run = train_on_transactions(events, config)
    targeting = run.metrics["targeting"]
    valid = run.valid
    sign = {"purchase": 1.0, "refund": -1.0}  # refunds as negative amounts
    frame = pd.DataFrame(
        [(e.customer_id, e.event_time.timestamp(),
          sign.get(e.type, 0.0) * float(getattr(e.payload, "amount", 0.0))) for e in events],
        columns=["customer", "t", "amount"],
    )  # fmt: skip
    value = np.zeros(len(valid))
    for cut in np.unique(valid.cutoffs).tolist():
        before = frame[frame["t"] < cut]
        first = before.groupby("customer")["t"].min()
        year = before[before["t"] >= cut - 365 * 86_400]
        spent = year.groupby("customer")["amount"].sum().clip(lower=0.0)
        at = np.flatnonzero(valid.cutoffs == cut)
        ids = pd.Index([valid.customer_ids[i] for i in at])
        days = np.clip((cut - first.reindex(ids).to_numpy()) / 86_400, 90, 365)
        value[at] = spent.reindex(ids).fillna(0).to_numpy() / days * 90
    value = np.round(value, 2)
    y = valid.y.astype(bool)
    reached = {}
    for name, key in (("expected_loss", run.valid_scores * value), ("p_churn", run.valid_scores)):
        total = 0.0
        for cut in np.unique(valid.cutoffs):
            rows = np.flatnonzero(valid.cutoffs == cut)
            top = rows[np.argsort(-key[rows], kind="stable")[: math.ceil(0.1 * len(rows))]]
            total += float(value[top][y[top]].sum())
        reached[name] = total
    reported = targeting["budgets"]["0.10"]["churned_value"]
    assert reported["expected_loss"] == pytest.approx(reached["expected_loss"], rel=1e-3)
    assert reported["p_churn"] == pytest.approx(reached["p_churn"], rel=1e-3)
    assert targeting["budgets"]["0.10"]["expected_loss_vs_p_churn"] >= 1.5
    assert targeting["churned_value"] == pytest.approx(float(value[y].sum()), rel=1e-3)
    # 12346 bought 74,215 items for 77,183.60 and had the order refunded the same day:
    # worth nothing at either cutoff, however likely to churn
    refunded = [i for i, c in enumerate(valid.customer_ids) if c == "12346"]
    assert refunded and value[refunded].tolist() == [0.0] * len(refunded)
    valued = customer_values(valid.X, valid.feature_names, Valuation(90, retention_days=400))
    assert valued[refunded].tolist() == [0.0] * len(refunded)
    assert valued == pytest.approx(value, abs=0.02)
