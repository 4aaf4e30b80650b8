"""Customer histories the contract suites evaluate features and models on.

Three groups, each with the retention the store would apply to it:

* the simulator's customers (every activity type, subscriptions, extras, refunds, plan
  changes, cancellations and silent churners), 150 days with the default retention of
  120 days, so the retention edge is crossed;
* a shop's customers (purchases with order lines, refunds) over 300 days with a retention
  of 400 days, so the 180- and 365-day windows fill;
* edge cases: a customer seen once, one with a refund and nothing else, one whose only
  purchase has no lines, one who only saw an error page.

Everything is deterministic (seeded), pure and in memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core import events as ev
from core.aggregates import CustomerAggregates
from offline.simulator import SimulationConfig, simulate

DAY = 86_400


@dataclass(frozen=True)
class History:
    """One customer's events (in event-time order) and the store's retention for them."""

    customer_id: str
    events: tuple[ev.Event, ...]
    retention_days: int

    def state(self, order: list[int] | None = None) -> CustomerAggregates:
        """The customer's aggregates after applying the events (in ``order`` when given,
        indices into ``events``)."""
        state = CustomerAggregates(self.customer_id)
        for index in order if order is not None else range(len(self.events)):
            state.apply(self.events[index], self.retention_days)
        return state

    @property
    def first_time(self) -> int:
        return int(self.events[0].event_time.timestamp())

    @property
    def last_time(self) -> int:
        return int(self.events[-1].event_time.timestamp())


def _by_customer(events: list[ev.Event], retention_days: int) -> list[History]:
    grouped: dict[str, list[ev.Event]] = {}
    for event in events:
        grouped.setdefault(event.customer_id, []).append(event)
    return [
        History(
            customer, tuple(sorted(mine, key=lambda e: (e.event_time, e.event_id))), retention_days
        )
        for customer, mine in grouped.items()
    ]


def simulated(customers: int = 30, days: int = 150, seed: int = 11) -> list[History]:
    config = SimulationConfig(customers=customers, days=days, seed=seed)
    return _by_customer(list(simulate(config)), retention_days=120)


def _purchase(customer: str, when: datetime, eid: str, rng: random.Random) -> ev.Purchase:
    lines = [
        ev.LineItem(sku=f"sku-{rng.randrange(30)}", quantity=rng.randrange(1, 12),
                 unit_price=round(rng.uniform(0.5, 20.0), 2))
        for _ in range(rng.randrange(1, 5))
    ]  # fmt: skip
    payload = ev.PurchasePayload(
        order_id=eid,
        amount=round(sum(line.quantity * line.unit_price for line in lines), 2),
        quantity=sum(line.quantity for line in lines),
        lines=lines,
    )
    return ev.Purchase(event_id=eid, customer_id=customer, event_time=when, payload=payload)


def shop(customers: int = 12, days: int = 300, seed: int = 5) -> list[History]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    events: list[ev.Event] = []
    for c in range(customers):
        name = f"shop-{c}"
        t = rng.uniform(0, days * 0.5)
        gap = rng.uniform(3, 40)
        n = 0
        while t < days:
            when = start + timedelta(days=t)
            events.append(_purchase(name, when, f"{name}-p{n}", rng))
            if rng.random() < 0.15:
                refund = ev.RefundPayload(order_id=f"{name}-r{n}", amount=7.5, quantity=1)
                events.append(
                    ev.Refund(event_id=f"{name}-r{n}", customer_id=name,
                           event_time=when + timedelta(hours=rng.uniform(1, 90)), payload=refund)
                )  # fmt: skip
            t += rng.expovariate(1 / gap)
            n += 1
    return _by_customer(events, retention_days=400)


def edge_cases() -> list[History]:
    when = datetime(2026, 2, 10, 17, 30, tzinfo=UTC)
    once = ev.SessionStart(
        event_id="once-s", customer_id="edge-once", event_time=when,
        payload=ev.SessionStartPayload(session_id="s1", level="paid"),
    )  # fmt: skip
    refund_only = ev.Refund(
        event_id="refund-only-r", customer_id="edge-refund", event_time=when,
        payload=ev.RefundPayload(order_id="r1", amount=12.0, quantity=2),
    )  # fmt: skip
    bare = ev.Purchase(
        event_id="bare-p", customer_id="edge-bare", event_time=when,
        payload=ev.PurchasePayload(order_id="p1", amount=0.0),
    )  # fmt: skip
    error = ev.Error(
        event_id="error-e", customer_id="edge-error", event_time=when,
        payload=ev.ErrorPayload(session_id="s1", code=500),
    )  # fmt: skip
    return [History(e.customer_id, (e,), 120) for e in (once, refund_only, bare, error)]


def all_histories() -> list[History]:
    return [*simulated(), *shop(), *edge_cases()]
