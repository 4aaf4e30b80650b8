"""A service before and after a product change, for the drift tests.

The champion is the bootstrap trainer's model fitted on the simulator with the scenario's
seed and no drift (its reference sample holds validation rows at the last weekly cutoffs,
days 63 and 70 of 84). The live service is the same seed's simulation *with* a drift from
``drift_at`` on, ending at the latest Saturday midnight (UTC; real time, at which the
worker scores, is 0 to 7 days later). The simulator has weekly rhythms, so a scenario
ending on another weekday is another scenario: its drift figures move (a score drift
with p = 0.08, order counts drifting with no change to purchases, on a Sunday). Ending on
the same weekday whatever day the tests run keeps the scenario the one the assertions
were calibrated on; the tests that check drift do so at a fixed time after its end
(:data:`CHECKED_AFTER_END`), not at the wall clock.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis

from core.events import Event
from core.model import LinearModel
from core.producer import EventProducer
from core.registry import ModelRegistry
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate
from offline.train import bootstrap_from_simulation
from stream.batch import BatchProcessor
from tests.support_batch import feed, processor

DAYS = 84
DRIFT_AT = 63
_SATURDAY = 5  # datetime.weekday()
# When the drift tests check the service after the change: the evening of the scenario's
# end day, as when they were calibrated.
CHECKED_AFTER_END = timedelta(hours=20)


@dataclass
class DriftScenario:
    customers: int
    seed: int
    start: datetime
    champion: LinearModel
    before: list[Event]
    after: list[Event]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def change_at(self) -> datetime:
        """When the product change came into force (UTC)."""
        return self.start + timedelta(days=DRIFT_AT)

    @property
    def end(self) -> datetime:
        """Midnight after the scenario's last day (UTC)."""
        return self.start + timedelta(days=DAYS)


def make_scenario(
    settings: Settings, client: redis.Redis, customers: int = 300, seed: int = 5
) -> DriftScenario:
    """Register and promote the champion; simulate (nothing is processed yet)."""
    model, metrics, reference = bootstrap_from_simulation(customers=customers, days=DAYS, seed=seed)
    registry = ModelRegistry(settings, client)
    registry.register(model, metrics, model.metadata.get("training", {}), reference=reference)
    registry.promote(model.version)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today - timedelta(days=(today.weekday() - _SATURDAY) % 7)
    start = end - timedelta(days=DAYS)
    config = SimulationConfig(
        customers=customers, days=DAYS, seed=seed, start=start, drift_at=DRIFT_AT
    )
    events = list(simulate(config))
    change = start + timedelta(days=DRIFT_AT)
    return DriftScenario(
        customers=customers,
        seed=seed,
        start=start,
        champion=model,
        before=[e for e in events if e.event_time < change],
        after=[e for e in events if e.event_time >= change],
    )


@contextmanager
def streaming(
    settings: Settings, client: redis.Redis, model: LinearModel
) -> Iterator[BatchProcessor]:
    """The worker's batch processor (real Redis, real Kafka for band changes)."""
    with EventProducer(settings) as producer:
        worker = processor(settings, client, producer, model, clock=time.time)
        yield worker
        del worker
    del producer
    gc.collect()  # librdkafka's client goes now, not after the broker stops


def process(worker: BatchProcessor, scenario: DriftScenario, events: list[Event]) -> None:
    """Apply ``events`` as the worker would, in batches of 2,000."""
    feed(worker, events, 2000, scenario.offsets)
