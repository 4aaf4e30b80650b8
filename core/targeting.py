"""Whom to contact: customer value, expected loss and the expected net gain of a campaign.

The arithmetic of cost-aware retention targeting, as pure numpy functions shared by the
worker (value stored with each score), the API and ``churnstream targets`` (the contact
list) and the trainer (the offline evaluation):

* **value** of a customer: what they are expected to bring over the label horizon — their
  spend rate over the last year, net of what they had refunded in it, times the horizon
  (transaction data), or their plan's value (``CHURN_PLAN_VALUES``, subscriptions),
  whichever is larger, so a paying subscriber whose renewals arrive as purchases is not
  counted twice (:func:`customer_values`);
* **expected loss** = p(churn) x value (:func:`expected_loss`);
* **expected net gain of contacting** = p(churn) x save rate x (value - incentive) -
  contact cost (:func:`expected_gain`): every contacted customer costs the contact; a
  churner who accepts the offer (the save rate) is kept and is paid the incentive. This is
  the profit of the expected maximum profit measure (Verbraken et al., 2013) for one
  customer, with the incentive paid only by the churners who accept it (EMP also pays it to
  contacted customers who were staying anyway; here they cost the contact only);
* **the contact list**: customers with a positive gain, best first, while the campaign's
  expected spend fits the budget (:func:`rank_contacts`).

Money is in the events' currency (major units, e.g. pounds); probabilities are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.settings import (
    DEFAULT_CONTACT_COST,
    DEFAULT_INCENTIVE,
    DEFAULT_PLAN_VALUES,
    DEFAULT_SAVE_RATE,
    Settings,
)

if TYPE_CHECKING:
    from core.risk import RiskAssessment

# The features a value is computed from (all defined in core.features).
VALUE_INPUTS: tuple[str, ...] = (
    "revenue_365d",
    "refund_share_365d",
    "days_since_first_seen",
    "is_paid",
)
SPEND_WINDOW_DAYS = 365


@dataclass(frozen=True)
class Campaign:
    """A retention campaign's economics: ``contact_cost`` per customer contacted,
    ``incentive`` paid to each churner who accepts, ``save_rate`` the share of contacted
    churners who accept and stay.

    >>> Campaign()
    Campaign(contact_cost=1.0, incentive=10.0, save_rate=0.3)
    >>> Campaign(save_rate=1.5)
    Traceback (most recent call last):
    ...
    ValueError: save_rate must be in [0, 1], got 1.5
    """

    contact_cost: float = DEFAULT_CONTACT_COST
    incentive: float = DEFAULT_INCENTIVE
    save_rate: float = DEFAULT_SAVE_RATE

    def __post_init__(self) -> None:
        for name in ("contact_cost", "incentive", "save_rate"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.save_rate > 1:
            raise ValueError(f"save_rate must be in [0, 1], got {self.save_rate!r}")

    def with_overrides(self, **overrides: float | None) -> Campaign:
        """This campaign with the given (non-None) fields replaced.

        >>> Campaign().with_overrides(incentive=5.0, save_rate=None).incentive
        5.0
        """
        fields = {"contact_cost": self.contact_cost, "incentive": self.incentive,
                  "save_rate": self.save_rate}  # fmt: skip
        fields.update({k: float(v) for k, v in overrides.items() if v is not None})
        return Campaign(**fields)

    @classmethod
    def from_settings(cls, settings: Settings) -> Campaign:
        """The campaign of ``CHURN_CONTACT_COST``, ``CHURN_RETENTION_INCENTIVE`` and
        ``CHURN_SAVE_RATE``."""
        return cls(settings.contact_cost, settings.retention_incentive, settings.save_rate)


@dataclass(frozen=True)
class Valuation:
    """How a customer's value is estimated (see :func:`customer_values`): ``plan_values``
    per plan level, over ``horizon_days`` (the model's label horizon), with features that
    see at most ``retention_days`` of history."""

    horizon_days: float = 14.0
    plan_values: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PLAN_VALUES))
    retention_days: int = 120

    def spend_days(self) -> tuple[float, float]:
        """The fewest and most days a spend rate is taken over: the horizon (at least 1),
        and the year the spend is summed over, or the retention if shorter.

        >>> Valuation(horizon_days=90, retention_days=120).spend_days()
        (90.0, 120.0)
        """
        most = float(min(SPEND_WINDOW_DAYS, self.retention_days))
        return min(max(float(self.horizon_days), 1.0), most), most

    @classmethod
    def from_settings(cls, settings: Settings, model_metadata: Mapping[str, Any]) -> Valuation:
        """The valuation for a model (its label horizon, else ``CHURN_LABEL_HORIZON_DAYS``)
        with ``CHURN_PLAN_VALUES`` and ``CHURN_RETENTION_DAYS``."""
        return cls(
            horizon_days=model_horizon_days(model_metadata, settings.label_horizon_days),
            plan_values=dict(settings.plan_values),
            retention_days=settings.retention_days,
        )


def expected_loss(p_churn: Any, value: Any) -> np.ndarray:
    """p(churn) x value: the value expected to leave with the customer.

    >>> expected_loss(np.array([0.5, 0.1]), np.array([200.0, 1000.0])).tolist()
    [100.0, 100.0]
    """
    loss: np.ndarray = np.asarray(p_churn, dtype=np.float64) * np.asarray(value, dtype=np.float64)
    return loss


def expected_gain(p_churn: Any, value: Any, campaign: Campaign) -> np.ndarray:
    """Expected net gain of contacting: p x save rate x (value - incentive) - contact cost.

    With EMP's defaults (value 200, incentive 10, contact cost 1, save rate 0.3), contacting
    pays from p(churn) > 1 / (0.3 x 190) ~ 0.0175:

    >>> expected_gain(np.array([0.5, 0.01]), 200.0, Campaign()).round(2).tolist()
    [27.5, -0.43]
    """
    p = np.asarray(p_churn, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    gain: np.ndarray = p * campaign.save_rate * (v - campaign.incentive) - campaign.contact_cost
    return gain


def expected_spend(p_churn: Any, campaign: Campaign) -> np.ndarray:
    """What contacting a customer is expected to cost: the contact, plus the incentive
    for the share that accepts (p x save rate).

    >>> expected_spend(np.array([0.0, 0.5]), Campaign()).tolist()
    [1.0, 2.5]
    """
    p = np.asarray(p_churn, dtype=np.float64)
    spend: np.ndarray = campaign.contact_cost + p * campaign.save_rate * campaign.incentive
    return spend


def rank_contacts(
    gain: np.ndarray,
    spend: np.ndarray,
    *,
    budget: float | None = None,
    max_contacts: int | None = None,
) -> np.ndarray:
    """Indexes of the customers to contact: positive ``gain`` only, highest gain first
    (ties by index), as long as the running total of ``spend`` stays within ``budget``
    and at most ``max_contacts`` (None: no limit). The list is a prefix of the ranking:
    it stops at the first customer who does not fit the budget.

    >>> gain = np.array([5.0, -1.0, 9.0, 2.0, 0.0])
    >>> rank_contacts(gain, np.ones(5)).tolist()
    [2, 0, 3]
    >>> rank_contacts(gain, np.array([1.0, 1.0, 3.0, 1.0, 1.0]), budget=3.5).tolist()
    [2]
    >>> rank_contacts(gain, np.ones(5), max_contacts=2).tolist()
    [2, 0]
    """
    gain = np.asarray(gain, dtype=np.float64)
    order = np.argsort(-gain, kind="stable")
    order = order[gain[order] > 0]
    if max_contacts is not None:
        order = order[: max(max_contacts, 0)]
    if budget is not None:
        within = np.cumsum(np.asarray(spend, dtype=np.float64)[order]) <= budget + 1e-9
        order = order[: int(np.argmin(within)) if not within.all() else len(order)]
    return order


def with_value_inputs(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` followed by the :data:`VALUE_INPUTS` it lacks: one feature evaluation
    then gives both a model's inputs and the customer's value.

    >>> with_value_inputs(("is_paid", "orders_30d"))
    ('is_paid', 'orders_30d', 'revenue_365d', 'refund_share_365d', 'days_since_first_seen')
    """
    return (*names, *(name for name in VALUE_INPUTS if name not in names))


def customer_values(features: np.ndarray, names: Sequence[str], valuation: Valuation) -> np.ndarray:
    """Each row's value over the horizon: max(spend estimate, plan value), rounded to cents.

    The spend estimate is the customer's net spend rate over the last year — the amount
    spent in it, less the share of it refunded in the same window (``refund_share_365d``,
    clipped to [0, 1], so refunds never make a value negative), divided by the days it
    covers: the days since first seen, at most 365 and at most ``retention_days``, and at
    least ``horizon_days`` (so a new customer is valued at what they spent, not at their
    first days' spending stretched over the horizon) — times ``horizon_days``. A customer
    who had everything refunded is worth their plan value only. The plan value is
    ``plan_values["paid"]`` on the paid plan, else ``plan_values["free"]`` (0 when absent).
    ``features`` has one column per name in ``names``, which include :data:`VALUE_INPUTS`.
    Costs a few vectorised numpy operations per call (~10 ns per customer).

    >>> names = ("revenue_365d", "refund_share_365d", "days_since_first_seen", "is_paid")
    >>> x = np.array([[300.0, 0.0, 600.0, 0.0], [300.0, 0.0, 180.0, 0.0],
    ...               [300.0, 0.0, 2.0, 0.0], [0.0, 0.0, 400.0, 1.0],
    ...               [300.0, 0.5, 180.0, 0.0], [300.0, 1.0, 180.0, 0.0],
    ...               [300.0, 1.0, 180.0, 1.0]])
    >>> customer_values(x, names, Valuation(horizon_days=90, retention_days=400)).tolist()
    [73.97, 150.0, 300.0, 200.0, 75.0, 0.0, 200.0]
    """
    column = {name: names.index(name) for name in VALUE_INPUTS}
    spent = features[:, column["revenue_365d"]]
    kept = 1.0 - np.clip(features[:, column["refund_share_365d"]], 0.0, 1.0)
    fewest, most = valuation.spend_days()
    days = np.clip(features[:, column["days_since_first_seen"]], fewest, most)
    spend = np.maximum(spent, 0.0) * kept / days * valuation.horizon_days
    paid = features[:, column["is_paid"]] > 0.5
    plans = valuation.plan_values
    plan = np.where(paid, plans.get("paid", 0.0), plans.get("free", 0.0))
    values: np.ndarray = np.round(np.maximum(spend, plan), 2)
    return values


def value_of(features: Mapping[str, float], valuation: Valuation) -> float:
    """:func:`customer_values` of one customer's features by name, in plain Python (a
    microsecond, where numpy's per-call overhead costs tens): the same operations in the
    same order, so the two agree exactly.

    >>> value_of({"revenue_365d": 300.0, "refund_share_365d": 0.5,
    ...           "days_since_first_seen": 180.0, "is_paid": 0.0},
    ...          Valuation(horizon_days=90, retention_days=400))
    75.0
    """
    fewest, most = valuation.spend_days()
    kept = 1.0 - min(max(features["refund_share_365d"], 0.0), 1.0)
    days = min(max(features["days_since_first_seen"], fewest), most)
    spend = max(features["revenue_365d"], 0.0) * kept / days * valuation.horizon_days
    level = "paid" if features["is_paid"] > 0.5 else "free"
    plan = valuation.plan_values.get(level, 0.0)
    return round(max(spend, plan) * 100.0) / 100.0  # as numpy rounds: rint(x * 100) / 100


def value_fields(assessment: RiskAssessment, valuation: Valuation) -> dict[str, float]:
    """``{"value": …, "expected_loss": …}`` of a live risk assessment (one with a score),
    from its features, rounded to cents."""
    value = value_of(assessment.features, valuation)
    return {"value": value, "expected_loss": round((assessment.score or 0.0) * value, 2)}


def model_horizon_days(metadata: Mapping[str, Any], default: float) -> float:
    """The label horizon a model was trained for (its ``horizon_days``), else ``default``.

    >>> model_horizon_days({"horizon_days": 90}, 14), model_horizon_days({}, 14)
    (90.0, 14.0)
    """
    horizon = metadata.get("horizon_days")
    return float(horizon) if isinstance(horizon, int | float) and horizon > 0 else float(default)
