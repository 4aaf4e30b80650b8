"""Helpers for tests of the worker's batch processing: simulated events as Kafka messages,
a processor over a real Redis, and the offline computation the online state must equal."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import redis

from core.aggregates import CustomerAggregates
from core.events import Event, encode_event
from core.keys import Keys
from core.model import LinearModel
from core.producer import EventProducer
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from stream.batch import BatchProcessor, BatchReport
from stream.messages import RawMessage
from tests.support_models import recency_model

PARTITIONS = 3
NOW = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

Snapshots = dict[str, object]


def simulated(
    customers: int = 40,
    days: int = 21,
    seed: int = 3,
    start: datetime = datetime(2026, 2, 1, tzinfo=UTC),
) -> list[Event]:
    config = SimulationConfig(customers=customers, days=days, seed=seed, start=start)
    return list(simulate(config))


def as_messages(
    topics: Topics, events: Iterable[Event], offsets: dict[tuple[str, int], int]
) -> list[RawMessage]:
    """Messages as Kafka would deliver them: keyed by customer, offsets per partition."""
    messages = []
    for event in events:
        topic = topics.for_kind(event.topic_kind)
        partition = zlib.crc32(event.customer_id.encode()) % PARTITIONS
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        messages.append(
            RawMessage(topic, partition, offset, event.customer_id.encode(), encode_event(event))
        )
    return messages


def simulated_messages(
    topics: Topics, customers: int = 40, days: int = 21, seed: int = 3
) -> tuple[list[Event], list[RawMessage]]:
    """Simulated events (see :func:`simulated`) and the same as messages from offset 0."""
    events = simulated(customers, days, seed)
    return events, as_messages(topics, events, {})


def batches(messages: Sequence[RawMessage], size: int) -> Iterable[list[RawMessage]]:
    for start in range(0, len(messages), size):
        yield list(messages[start : start + size])


def feed(
    worker: BatchProcessor,
    events: Iterable[Event],
    size: int,
    offsets: dict[tuple[str, int], int] | None = None,
) -> list[BatchReport]:
    """Process ``events`` as messages (see :func:`as_messages`) in batches of ``size``."""
    messages = as_messages(worker.topics, events, {} if offsets is None else offsets)
    return [worker.process(batch) for batch in batches(messages, size)]


def offline(
    events: Iterable[Event], retention_days: int, dedup_days: int | None = None
) -> dict[str, CustomerAggregates]:
    states: dict[str, CustomerAggregates] = {}
    for event in events:
        states.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(
            event, retention_days, dedup_days
        )
    return states


def stored(
    settings: Settings, client: redis.Redis, customer_ids: Iterable[str]
) -> dict[str, CustomerAggregates]:
    store = FeatureStore(client, Keys.of(settings))
    return {cid: c.aggregates for cid, c in store.load_customers(sorted(customer_ids)).items()}


def online_and_offline(
    settings: Settings, client: redis.Redis, events: Iterable[Event]
) -> tuple[Snapshots, Snapshots]:
    """The snapshots of the customers of ``events`` as Redis holds them, and as the offline
    computation of the same events gives them (by customer id)."""
    expected = offline(events, settings.retention_days)
    got = stored(settings, client, expected)
    return (
        {c: a.snapshot() for c, a in got.items()},
        {c: a.snapshot() for c, a in expected.items()},
    )


def processor(
    settings: Settings,
    client: redis.Redis,
    producer: EventProducer,
    model: LinearModel | None = None,
    clock: Callable[[], float] = lambda: NOW,
) -> BatchProcessor:
    """The worker's batch processor over ``client``, scoring with ``model`` (default: the
    recency model); its clock reads NOW unless ``clock`` is given (e.g. ``time.time``)."""
    scorer = recency_model() if model is None else model
    return BatchProcessor(
        settings, FeatureStore(client, Keys.of(settings)), producer, lambda: scorer, clock=clock
    )
