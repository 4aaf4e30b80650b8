"""The demo's simulated customers: their history up to the present, then their live events.

The worker scores every customer it touches at the present (wall-clock) time. History
streamed slowly, in time order, would therefore be scored half-loaded for minutes: a
customer whose first week alone had arrived would look silent for weeks, and most
customers would sit in the High band until the stream reached the present. So the demo
splits one simulation at the present:

* the **history** (every event before the present) is sent first, as fast as Kafka takes
  it, as a backfill; the demo waits until the worker has applied all of it before it
  serves the dashboard and goes live (while the backfill is applied, a customer's
  transactions and activity, read from two topics, may land some seconds apart);
* the **live** events (the rest of the simulation) follow at the demo's rate, each
  stamped with the time it is sent: the simulated customers live on at the present,
  much faster than real time (about 11 s per simulated day at 300 events/s for 500
  customers).

The history is held in memory until it is sent (a few hundred bytes per event: ~100,000
events for 500 customers over 30 days).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from core.events import Event
from core.producer import EventProducer
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate

LIVE_DAYS = 365  # simulated days after the present: about an hour of live events at 300/s


@dataclass
class SimulatedCustomers:
    """One simulation split at ``present``: the ``history`` before it and an iterator of
    the ``live`` events after it (both in simulated time order; not yet stamped)."""

    config: SimulationConfig
    present: datetime
    history: list[Event]
    live: Iterator[Event]

    @property
    def history_customers(self) -> int:
        return len({event.customer_id for event in self.history})


def split_at_present(customers: int, days: int, seed: int, present: datetime) -> SimulatedCustomers:
    """Simulate ``customers`` from ``days`` days before ``present``'s midnight (UTC) to
    :data:`LIVE_DAYS` days after it, and split the events at ``present``."""
    midnight = present.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        customers=customers,
        days=days + LIVE_DAYS,
        start=midnight - timedelta(days=days),
        seed=seed,
    )
    events = simulate(config)
    history: list[Event] = []
    first_live: list[Event] = []
    for event in events:
        if event.event_time >= present:
            first_live.append(event)
            break
        history.append(event)
    return SimulatedCustomers(config, present, history, itertools.chain(first_live, events))


def stamped_at_present(
    events: Iterable[Event], clock: Callable[[], float] = time.time
) -> Iterator[Event]:
    """``events`` with ``event_time`` set to the clock (whole seconds, UTC) as each is taken."""
    for event in events:
        now = datetime.fromtimestamp(int(clock()), UTC)
        yield msgspec.structs.replace(event, event_time=now)


def send_history(
    settings: Settings, history: Iterable[Event], timeout: float = 120.0
) -> tuple[int, int]:
    """Send ``history`` to Kafka as fast as it takes it and wait for delivery; return
    (delivered, failed)."""
    with EventProducer(settings, create_topics=False) as producer:
        for event in history:
            producer.send(event)
        producer.flush(timeout=timeout)
        stats = producer.stats
        return stats.delivered, stats.failed
