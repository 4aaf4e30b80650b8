"""How well a contact list would have done: targeting measured on realized outcomes.

On the validation rows (customer, cutoff) with their realized labels, at each cutoff
separately (one campaign per cutoff), then summed over the cutoffs:

* **churned value reached** at a budget of a share of the customers: contact the top
  ``ceil(share x customers)`` by a ranking and add up the value of those who churned. The
  **realized value of a churner** is their value estimate at the cutoff
  (:func:`core.targeting.customer_values`: what they were expected to bring over the
  horizon, which the churn takes away). Three rankings: by **expected loss** (p x value),
  by **p(churn)** alone and by **value** alone;
* the **profit curve**: contacting the top share of customers by expected net gain, the
  realized profit under a campaign is, over the contacted, save rate x (value - incentive)
  for each churner (their expected saved value) minus the contact cost for everyone; its
  maximum gives the **best share of customers to contact**, to compare with the share the
  contact list itself picks (a positive expected gain);
* **value accuracy**: each value estimate against the net spend realized in the horizon
  (purchases less refunds) by the customers who did not churn (for whom it is observed), as
  mean absolute error, Spearman rank correlation and the ratio of the totals.

Money is in the events' currency; shares are of the customers at each cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.events import Event
from core.targeting import Campaign, Valuation, customer_values, expected_gain, expected_loss
from offline.dataset import Dataset

BUDGET_SHARES = (0.05, 0.10, 0.20)
CURVE_SHARES = tuple(round(i / 100, 2) for i in range(0, 101))
VALUE_DEFINITION = (
    "a churner's realized value is their value estimate at the cutoff: spend over the last "
    "365 days (at most the retention) net of the share refunded in them, per day known (at "
    "least the horizon), times the label horizon, or their plan's value (CHURN_PLAN_VALUES) "
    "if larger"
)


def _per_cutoff(cutoffs: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(cutoffs == c) for c in np.unique(cutoffs)]


def _top(key: np.ndarray, share: float) -> np.ndarray:
    """Indexes of the top ``ceil(share x len)`` of ``key``, highest first (ties by index)."""
    k = math.ceil(round(share * len(key), 9))
    return np.argsort(-key, kind="stable")[:k]


def churned_value_reached(
    y: np.ndarray, value: np.ndarray, key: np.ndarray, cutoffs: np.ndarray, share: float
) -> float:
    """The value of the churners among the top ``share`` of each cutoff's customers by
    ``key``, summed over the cutoffs.

    >>> y, v = np.array([1, 0, 1, 1]), np.array([10.0, 50.0, 40.0, 5.0])
    >>> churned_value_reached(y, v, v, np.zeros(4), 0.5)  # top 2 by value: 50 (stays), 40
    40.0
    """
    reached = 0.0
    for rows in _per_cutoff(cutoffs):
        top = rows[_top(key[rows], share)]
        reached += float((value[top] * y[top]).sum())
    return round(reached, 2)


def realized_profit(
    y: np.ndarray,
    value: np.ndarray,
    key: np.ndarray,
    cutoffs: np.ndarray,
    share: float,
    campaign: Campaign,
) -> float:
    """Contacting the top ``share`` of each cutoff's customers by ``key``: save rate x
    (value - incentive) for each churner reached, minus the contact cost of everyone
    contacted, summed over the cutoffs.

    >>> y, v = np.array([1, 0]), np.array([200.0, 200.0])
    >>> realized_profit(y, v, np.array([0.9, 0.1]), np.zeros(2), 0.5, Campaign())
    56.0
    """
    profit = 0.0
    for rows in _per_cutoff(cutoffs):
        top = rows[_top(key[rows], share)]
        saved = campaign.save_rate * (value[top] - campaign.incentive) * y[top]
        profit += float(saved.sum()) - campaign.contact_cost * len(top)
    return round(profit, 2)


def targeting_metrics(
    y: np.ndarray,
    p_churn: np.ndarray,
    value: np.ndarray,
    cutoffs: np.ndarray,
    campaign: Campaign | None = None,
    budgets: Sequence[float] = BUDGET_SHARES,
) -> dict[str, Any]:
    """The measures of the module docstring, as a JSON-ready dict (``metrics.targeting``)."""
    campaign = campaign or Campaign()
    y = np.asarray(y, dtype=np.float64)
    loss = expected_loss(p_churn, value)
    gain = expected_gain(p_churn, value, campaign)
    rankings = {"expected_loss": loss, "p_churn": np.asarray(p_churn), "value": value}
    churned = float((value * y).sum())
    at_budget: dict[str, Any] = {}
    for share in budgets:
        reached = {
            name: churned_value_reached(y, value, key, cutoffs, share)
            for name, key in rankings.items()
        }
        at_budget[f"{share:.2f}"] = {
            "churned_value": reached,
            "share_of_churned_value": {
                name: round(v / churned, 4) if churned else 0.0 for name, v in reached.items()
            },
            "expected_loss_vs_p_churn": round(reached["expected_loss"] / reached["p_churn"], 4)
            if reached["p_churn"]
            else None,
        }
    curve = [realized_profit(y, value, gain, cutoffs, s, campaign) for s in CURVE_SHARES]
    by_p = [realized_profit(y, value, rankings["p_churn"], cutoffs, s, campaign)
            for s in CURVE_SHARES]  # fmt: skip
    best = int(np.argmax(curve))
    best_p = int(np.argmax(by_p))
    chosen = float((gain > 0).mean()) if len(gain) else 0.0
    return {
        "value_definition": VALUE_DEFINITION,
        "campaign": {
            "contact_cost": campaign.contact_cost,
            "incentive": campaign.incentive,
            "save_rate": campaign.save_rate,
        },
        "rows": len(y),
        "cutoffs": len(np.unique(cutoffs)),
        "churned_value": round(churned, 2),
        "budgets": at_budget,
        "profit_curve": {
            "ranking": "expected net gain",
            "shares": list(CURVE_SHARES),
            "profit": curve,
            "profit_by_p_churn": by_p,
        },
        "best_share": CURVE_SHARES[best],
        "best_profit": curve[best],
        "best_share_by_p_churn": CURVE_SHARES[best_p],
        "best_profit_by_p_churn": by_p[best_p],
        "positive_gain_share": round(chosen, 4),
        "profit_at_positive_gain": _profit_of_positive_gain(y, value, gain, cutoffs, campaign),
    }


def _profit_of_positive_gain(
    y: np.ndarray, value: np.ndarray, gain: np.ndarray, cutoffs: np.ndarray, campaign: Campaign
) -> float:
    """Realized profit of contacting exactly the customers with a positive expected gain."""
    chosen = gain > 0
    saved = campaign.save_rate * (value - campaign.incentive) * y
    return round(float(saved[chosen].sum()) - campaign.contact_cost * int(chosen.sum()), 2)


def realized_spend(
    events: Iterable[Event], customer_ids: Sequence[str], cutoffs: np.ndarray, horizon_days: int
) -> np.ndarray:
    """Each (customer, cutoff) row's net spend in ``(cutoff, cutoff + horizon]``: its
    purchase amounts less its refund amounts there, floored at 0 (a value is never
    negative)."""
    horizon = horizon_days * 86_400
    sign = {"purchase": 1.0, "refund": -1.0}
    rows = [(e.customer_id, e.event_time.timestamp(),
             sign[e.type] * float(getattr(e.payload, "amount", 0.0)))
            for e in events if e.type in sign]  # fmt: skip
    bought = pd.DataFrame(rows, columns=["customer", "t", "amount"])
    out = np.zeros(len(customer_ids))
    wanted = pd.Series(list(customer_ids))
    for cut in np.unique(cutoffs).tolist():
        inside = bought[(bought["t"] > cut) & (bought["t"] <= cut + horizon)]
        spent = inside.groupby("customer")["amount"].sum()
        at = np.flatnonzero(cutoffs == cut)
        out[at] = spent.reindex(wanted.iloc[at]).fillna(0.0).to_numpy()
    return np.maximum(out, 0.0)


def value_accuracy(
    estimates: Mapping[str, np.ndarray], realized: np.ndarray, stayed: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each estimate against ``realized`` spend on the rows that ``stayed`` (did not churn):
    mean absolute error, Spearman rank correlation, and sum(estimate) / sum(realized)."""
    out = {}
    actual = realized[stayed]
    for name, estimate in estimates.items():
        guess = estimate[stayed]
        rho = pd.Series(guess).corr(pd.Series(actual), method="spearman") if len(guess) else 0.0
        out[name] = {
            "mae": round(float(np.abs(guess - actual).mean()), 2) if len(guess) else 0.0,
            "spearman": round(float(rho), 4),
            "total_ratio": round(float(guess.sum() / actual.sum()), 4) if actual.sum() else 0.0,
        }
    return out


def evaluate_targeting(
    valid: Dataset,
    scores: np.ndarray,
    valuation: Valuation,
    *,
    events: Iterable[Event] | None = None,
    campaign: Campaign | None = None,
) -> dict[str, Any]:
    """``metrics.targeting`` of a training run: :func:`targeting_metrics` on the validation
    rows (``valid``, with every feature of :data:`core.features.FEATURE_NAMES`) and the
    model's ``scores`` on them, values from :func:`core.targeting.customer_values`. With
    the ``events``, also the value accuracy, on the rows that did not churn, of the
    estimate used and of alternatives: the same before refunds (gross), the year's net
    spend rate over the days known from the first day on, and gross spend rates over 90
    and 180 days."""
    value = customer_values(valid.X, valid.feature_names, valuation)
    out = targeting_metrics(valid.y, scores, value, valid.cutoffs, campaign)
    out["horizon_days"] = valuation.horizon_days
    out["plan_values"] = dict(valuation.plan_values)
    if events is not None:
        realized = realized_spend(events, valid.customer_ids, valid.cutoffs, valid.horizon_days)
        column = {name: i for i, name in enumerate(valid.feature_names)}
        tenure = valid.X[:, column["days_since_first_seen"]]
        horizon = valuation.horizon_days
        fewest, most = valuation.spend_days()
        year = valid.X[:, column["revenue_365d"]]
        kept = 1.0 - np.clip(valid.X[:, column["refund_share_365d"]], 0.0, 1.0)
        no_refunds = valid.X.copy()
        no_refunds[:, column["refund_share_365d"]] = 0.0
        estimates = {
            "net spend_rate_365d (used)": value,
            "gross spend_rate_365d": customer_values(no_refunds, valid.feature_names, valuation),
            "net spend_rate_365d from day 1": year * kept / np.clip(tenure, 1.0, most) * horizon,
        }
        for days in (90, 180):
            spent = valid.X[:, column[f"revenue_{days}d"]]
            estimates[f"gross spend_rate_{days}d"] = (
                spent / np.clip(tenure, min(fewest, days), days) * horizon
            )
        out["value_accuracy"] = {
            "rows": int((valid.y == 0).sum()),
            "realized": "net spend (purchases less refunds, at least 0) in the label "
            "horizon, customers who did not churn",
            "estimates": value_accuracy(estimates, realized, valid.y == 0),
        }
    return out
