"""Re-scoring silent customers (:meth:`stream.batch.BatchProcessor.rescore_silent`), against
a real Redis and a real Kafka: each worker re-scores the customers of the partitions it
owns, whether it holds them in memory or not, and a customer re-scored once is not stale
any more, and a worker that lost its partitions cannot re-score them. (That its band
changes are published once, and that the next event compares with the re-scored band, is
in ``test_batch_guarantees``.)"""

from __future__ import annotations

import pytest
import redis

from core.keys import Keys
from core.producer import EventProducer
from core.settings import Settings
from core.topics import Topics
from tests.integration.test_batch_guarantees import redis_contents
from tests.integration.test_outbox import chains_are_whole
from tests.support import stored_score
from tests.support_batch import NOW, as_messages, processor, simulated_messages
from tests.support_kafka import band_changes

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


def test_a_worker_that_lost_its_partitions_cannot_rescore_them(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """A worker dropped from the group without noticing yet still holds its partitions'
    customers, with their bands from before. Once another worker has taken the partitions
    over and re-scored those customers, the stale worker's re-score must be refused. It
    moves no fence, so only the owner token the take-over wrote tells the two apart;
    accepted, it would overwrite the owner's scores and publish the same band changes a
    second time."""
    events, _ = simulated_messages(Topics.from_settings(settings), customers=20, days=10, seed=23)
    # Scored an hour after the newest event, then again after two weeks of silence:
    # recency rises, bands move up.
    scored = max(e.event_time for e in events).timestamp() + HOUR
    away = scored + 14 * 86_400
    stale = processor(settings, redis_client, producer, clock=lambda: scored)
    stale.process(as_messages(stale.topics, events, {}))  # holds every partition
    keys = Keys.of(settings)
    customers = sorted({e.customer_id for e in events})
    owner = processor(settings, redis_client, producer)
    owner.assign(range(keys.partitions))  # a rebalance the stale worker has not noticed
    try:
        rescored = owner.rescore_silent(now=away, older_than_seconds=HOUR, limit=1000)
        assert rescored == len(customers)
        before = redis_contents(redis_client, settings.redis_key_prefix)

        later = away + 2 * HOUR  # stale again, and still medium/low in the stale memory
        assert stale.rescore_silent(now=later, older_than_seconds=HOUR, limit=1000) == 0
        assert redis_contents(redis_client, settings.redis_key_prefix) == before
    finally:
        stale.close()
        owner.close()

    records = band_changes(settings, stale.topics.scores)
    changes = [(c.customer_id, c.previous_band, c.band) for c, _ in records]
    chains_are_whole(changes)  # no change published twice
    assert sum(1 for _, previous, _ in changes if previous is None) == len(customers)
    assert any(previous is not None for _, previous, _ in changes)  # the owner's re-score
    assert {c.scored_at for c, _ in records if c.previous_band is not None} == {away}
