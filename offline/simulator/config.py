"""What to simulate (:class:`SimulationConfig`), what really happened to each customer
(:class:`CustomerTruth`) and how customers are named (:func:`customer_id`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are per customer; times are UTC; days count from ``start``.

    ``drift_at`` is the index of the first day (0-based) on which the product change is in
    force, or ``None`` for no drift. The remaining knobs have sensible defaults; all of them
    are part of the config, so changing one changes the output.
    """

    customers: int = 1000
    days: int = 60
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    seed: int = 42
    drift_at: int | None = None
    new_customer_share: float = 0.3
    """Share of customers who sign up during the period (the others signed up before)."""
    paid_share: float = 0.45
    """Share of existing customers on the paid plan (new ones start mostly free)."""
    sessions_per_day: float = 0.55
    """Median over customers of the mean number of sessions per day."""
    items_per_session: float = 11.0
    """Median over customers of the mean number of items (plays, pages...) per session."""
    churn_rate: float = 0.28
    """Target share of fully exposed customers who churn within 60 days (no drift)."""
    cancel_share: float = 0.8
    """Share of churners who emit a ``cancellation``; the others just go silent."""
    subscription_price: float = 9.99
    """Monthly subscription price, GBP."""
    drift_sessions: float = 0.9
    """Factor on sessions per day from the drift day on."""
    drift_items: float = 0.75
    """Factor on items per session from the drift day on."""
    drift_plays: float = 0.75
    """Factor on the weight of plays among session items from the drift day on."""
    drift_errors: float = 3.0
    """Factor on the error-page rate from the drift day on."""
    drift_churn_rate: float = 0.12
    """Extra share of customers, exposed for 60 days after the drift, who churn because of it."""

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be a time-zone-aware datetime")
        start = self.start.astimezone(UTC).replace(microsecond=0)
        object.__setattr__(self, "start", start)
        if self.drift_at is not None and not 0 <= self.drift_at < self.days:
            raise ValueError(f"drift_at must be a day index in [0, {self.days})")
        for name in ("new_customer_share", "paid_share", "cancel_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 < self.churn_rate < 1.0 or not 0.0 <= self.drift_churn_rate < 1.0:
            raise ValueError("churn_rate must be in (0, 1) and drift_churn_rate in [0, 1)")

    @property
    def end(self) -> datetime:
        """End of the simulated period (exclusive), UTC."""
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True)
class CustomerTruth:
    """What really happened to one customer (the simulator's answer key).

    ``churn_probability`` is the probability with which ``churned`` was drawn: that of
    churning within the simulated period. ``churn_time`` (UTC) is the cancellation time, or
    for a silent churner the moment after which they are never seen again; no event of the
    customer is later than it. ``decline_start`` is when a churner's engagement began to
    decay. ``churn_cause`` is ``"baseline"`` or ``"drift"`` for churners, else ``None``.
    """

    customer_id: str
    churn_probability: float
    churned: bool
    churn_time: datetime | None
    cancelled: bool
    churn_cause: Literal["baseline", "drift"] | None
    signup_time: datetime
    initial_level: Literal["free", "paid"]
    sessions_per_day: float
    decline_start: datetime | None


def customer_id(index: int, customers: int) -> str:
    """The id of the customer at 0-based ``index``: ``C00001`` ... (wider past 99999).

    >>> customer_id(0, 1000), customer_id(99_999, 200_000)
    ('C00001', 'C100000')
    """
    width = max(5, len(str(customers)))
    return f"C{index + 1:0{width}d}"
