"""Single events and one customer's state built from them, for unit tests of features,
aggregates and their comparison."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from core.aggregates import CustomerAggregates
from core.events import (
    Event,
    ItemReactionPayload,
    Level,
    Like,
    Purchase,
    PurchasePayload,
    SessionStart,
    SessionStartPayload,
)


def like(i: int, when: datetime, customer: str = "c1") -> Like:
    return Like(
        event_id=f"l{i}", customer_id=customer, event_time=when, payload=ItemReactionPayload()
    )


def purchase(i: int, when: datetime, amount: float = 10.0, customer: str = "c1") -> Purchase:
    payload = PurchasePayload(order_id=f"o{i}", amount=amount, quantity=1)
    return Purchase(event_id=f"p{i}", customer_id=customer, event_time=when, payload=payload)


def session_start(
    event_id: str, when: datetime, session_id: str, level: Level, customer: str = "c1"
) -> SessionStart:
    return SessionStart(
        event_id=event_id,
        customer_id=customer,
        event_time=when,
        payload=SessionStartPayload(session_id=session_id, level=level),
    )


def aggregates_of(events: Iterable[Event], customer: str = "c1") -> CustomerAggregates:
    """``customer``'s state after applying ``events`` in the order given."""
    agg = CustomerAggregates(customer)
    for event in events:
        agg.apply(event)
    return agg
