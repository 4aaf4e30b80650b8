"""A batch's commit running while the next batch is worked on (``commit_behind``, what the
batch engine uses) keeps every guarantee of a synchronous one, against a real Redis and a
real Kafka:

* a stale worker's commit sent behind is refused, writes nothing, and the batch applied
  again on the next call counts nothing twice (or, as the batch engine has it, is given
  back to the caller when another worker took its partitions over);
* a commit that Redis refuses (here: Redis is full) is applied again, once, by the next
  batch, before that batch's own commit; the stored state is then exactly the offline
  computation of every event.
"""

from __future__ import annotations

import pytest
import redis

from churnstream.infra.redis_server import RedisServer
from core import metrics
from core.keys import Keys
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from stream.batch import BatchProcessor, PartitionsTakenOver
from stream.commit_behind import CommitFailed
from tests.integration.test_batch_guarantees import redis_contents
from tests.support_batch import NOW, batches, online_and_offline, simulated_messages
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def behind(
    settings: Settings,
    client: redis.Redis,
    producer: EventProducer,
    yield_taken_over: bool = False,
) -> BatchProcessor:
    model = recency_model()
    return BatchProcessor(
        settings,
        FeatureStore(client, Keys.of(settings)),
        producer,
        lambda: model,
        clock=lambda: NOW,
        publish_behind=True,
        commit_behind=True,
        yield_taken_over=yield_taken_over,
    )


def test_a_commit_sent_behind_refused_for_a_take_over_is_yielded_not_applied_again(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """The batch engine's case: the refusal of a commit sent behind, because another
    worker took the partitions over, is seen by the next call (here the idle ``flush``),
    which raises PartitionsTakenOver instead of applying the batch again (which would take
    the partitions back); nothing is written and the new owner applies every event."""
    stale = behind(settings, redis_client, producer, yield_taken_over=True)
    events, messages = simulated_messages(stale.topics, customers=20, days=14, seed=27)
    half = len(messages) // 2
    stale.process(messages[:half])
    stale.settle()  # committed and published: it holds the partitions' state and fences
    taker = behind(settings, redis_client, producer)
    taker.take_over(range(Keys.of(settings).partitions))  # a rebalance it has not heard of
    before = redis_contents(redis_client, settings.redis_key_prefix)

    stale.process(messages[half:])  # its commit is sent behind, and refused
    with pytest.raises(PartitionsTakenOver) as taken:
        stale.flush()
    assert {p for _, p in taken.value.fences} == {m.partition for m in messages[half:]}
    assert redis_contents(redis_client, settings.redis_key_prefix) == before
    assert stale.cached_customers == 0

    assert taker.process(messages[half:]).applied > 0
    taker.settle()
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected
    stale.close()
    taker.close()


def test_a_stale_commit_sent_behind_is_refused_and_counts_nothing_twice(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer, redis_topology: str
) -> None:
    stale = behind(settings, redis_client, producer)
    events, messages = simulated_messages(stale.topics, customers=20, days=14, seed=17)
    half = len(messages) // 2
    stale.process(messages[:half])
    stale.settle()  # its commit is done: it holds the partitions' state and fences

    taker = behind(settings, redis_client, producer)  # a rebalance the first has not seen
    assert taker.process(messages[half:]).applied > 0
    taker.settle()
    before = redis_contents(redis_client, settings.redis_key_prefix, owners=False)
    retries_before = metrics.WORKER_COMMIT_RETRIES._value.get()

    # Sent behind on stale fences: refused when it runs, and seen by the next call.
    stale.process(messages[half:])
    stale.settle()
    assert metrics.WORKER_COMMIT_RETRIES._value.get() >= retries_before + 1
    assert redis_contents(redis_client, settings.redis_key_prefix, owners=False) == before
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected
    stale.close()
    taker.close()


@pytest.mark.single_redis
def test_a_refused_commit_is_applied_again_by_the_next_batch(
    settings: Settings, own_redis: RedisServer, producer: EventProducer
) -> None:
    own = settings.model_copy(update={"redis_url": f"redis://{own_redis.address}/0"})
    client = connect_redis(own)
    worker = behind(own, client, producer)
    events, messages = simulated_messages(worker.topics, customers=25, days=14, seed=18)
    parts = list(batches(messages, len(messages) // 4 + 1))
    assert len(parts) == 4
    worker.process(parts[0])
    worker.settle()

    # Redis refuses every write while it is full: the second batch's commit, sent behind,
    # fails when Redis runs it.
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        worker.process(parts[1])
        pending = worker._pending
        assert pending is not None
        with pytest.raises(CommitFailed, match="OutOfMemory"):
            pending.commit.result(timeout=10)
    finally:
        client.config_set("maxmemory", 0)
    retries_before = metrics.WORKER_COMMIT_RETRIES._value.get()

    # The third batch applies the second one again first, then itself; the fourth goes on.
    worker.process(parts[2])
    worker.process(parts[3])
    worker.settle()
    assert metrics.WORKER_COMMIT_RETRIES._value.get() == retries_before + 1
    online, expected = online_and_offline(own, client, events)
    assert online == expected
    last = parts[3][-1]
    fences = worker.store.read_fences([(last.topic, last.partition)])
    assert fences[(last.topic, last.partition)] == max(
        m.offset for m in messages if (m.topic, m.partition) == (last.topic, last.partition)
    )
    worker.close()
