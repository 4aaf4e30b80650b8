"""Re-scoring silent customers (:meth:`stream.batch.BatchProcessor.rescore_silent`), against
a real Redis and a real Kafka: each worker re-scores the customers of the partitions it
owns, whether it holds them in memory or not, and a customer re-scored once is not stale
any more. (That its band changes are published once, and that the next event compares
with the re-scored band, is in ``test_batch_guarantees``.)"""

from __future__ import annotations

import pytest
import redis

from core.keys import Keys
from core.producer import EventProducer
from core.settings import Settings
from tests.support import stored_score
from tests.support_batch import NOW, processor, simulated_messages

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

LATER = NOW + 3 * 86_400  # three days of silence after the events were applied
HOUR = 3_600


def test_each_worker_rescores_the_silent_customers_of_its_own_partitions(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    first = processor(settings, redis_client, producer)
    second = processor(settings, redis_client, producer)
    events, messages = simulated_messages(first.topics, customers=30, days=10, seed=21)
    first.process([m for m in messages if m.partition != 2])
    second.process([m for m in messages if m.partition == 2])
    keys = Keys.of(settings)
    customers = sorted({e.customer_id for e in events})
    of_second = {c for c in customers if keys.shard_of(c) == 2}
    assert 0 < len(of_second) < len(customers)
    scored_at = {c: stored_score(redis_client, keys, c).scored_at for c in customers}  # type: ignore[union-attr]
    assert all(at < LATER - HOUR for at in scored_at.values())

    assert second.rescore_silent(now=LATER, older_than_seconds=HOUR, limit=1000) == len(of_second)
    after_second = {c: stored_score(redis_client, keys, c) for c in customers}
    assert {c for c, s in after_second.items() if s and s.scored_at == LATER} == of_second

    assert first.rescore_silent(now=LATER, older_than_seconds=HOUR, limit=1000) == len(
        customers
    ) - len(of_second)
    assert all(stored_score(redis_client, keys, c).scored_at == LATER for c in customers)  # type: ignore[union-attr]
    # Nobody is stale any more; the limit caps a tick.
    assert first.rescore_silent(now=LATER, older_than_seconds=HOUR, limit=1000) == 0
    assert second.rescore_silent(now=LATER + 2 * HOUR, older_than_seconds=HOUR, limit=3) == 3


def test_a_worker_rescores_partitions_assigned_to_it_before_any_message_arrives(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """After a restart or a rebalance a quiet partition gets no message, yet its silent
    customers must still be re-scored: the worker reads them from Redis, taking the
    partition's outbox over first."""
    before = processor(settings, redis_client, producer)
    events, messages = simulated_messages(before.topics, customers=12, days=10, seed=22)
    before.process(messages)
    before.close()
    customers = sorted({e.customer_id for e in events})
    keys = Keys.of(settings)

    restarted = processor(settings, redis_client, producer)
    assert restarted.rescore_silent(now=LATER, older_than_seconds=HOUR, limit=1000) == 0
    restarted.assign(range(keys.partitions))
    assert restarted.rescore_silent(now=LATER, older_than_seconds=HOUR, limit=1000) == len(
        customers
    )
    assert restarted.cached_customers == len(customers)  # now held, as a batch would
    assert all(stored_score(redis_client, keys, c).scored_at == LATER for c in customers)  # type: ignore[union-attr]
