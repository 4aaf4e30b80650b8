"""Redis going back in time (a failover to a replica that had not received the last writes,
a restore from a backup, the fsync window lost in a power cut): the worker must notice that
the fences are behind what it committed and read those events again, not skip them."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from core.events import Event
from core.keys import Keys
from core.producer import EventProducer
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate
from stream.batch import FencesWentBack
from tests.integration.test_worker import START, produce
from tests.support_batch import batches, online_and_offline, processor, simulated_messages
from tests.support_worker import started_worker, wait_drained

pytestmark = pytest.mark.integration


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*", count=1000)}


def roll_back(client: redis.Redis, prefix: str, to: dict[bytes, bytes]) -> None:
    """Replace every key under ``prefix`` by its value in ``to`` (keys not in it go)."""
    current = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if current:
        client.delete(*current)
    for key, value in to.items():
        client.restore(key, 0, value, replace=True)


def test_the_processor_refuses_a_batch_when_redis_lost_committed_batches(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    worker = processor(settings, redis_client, producer)
    events, messages = simulated_messages(worker.topics, customers=20, days=10, seed=8)
    chunks = list(batches(messages, 300))
    assert len(chunks) >= 4
    worker.process(chunks[0])
    keys = Keys.of(settings)
    after_first = snapshot(redis_client, settings.redis_key_prefix)
    partitions = sorted({(m.topic, m.partition) for m in messages})
    fences_after_first = worker.store.read_fences(partitions)
    worker.process(chunks[1])

    roll_back(redis_client, settings.redis_key_prefix, after_first)
    with pytest.raises(FencesWentBack) as refused:
        worker.process(chunks[2])
    tps = {(m.topic, m.partition) for m in chunks[2]}
    assert refused.value.fences == {tp: fences_after_first[tp] for tp in tps}
    assert worker.store.read_fences(partitions) == fences_after_first  # nothing written
    assert redis_client.get(keys.fence(*partitions[0])) is not None

    # What the consumer does next: find the other partitions that went back, then read
    # all of them again from the fences Redis has.
    rewind = {**refused.value.fences, **worker.fences_behind(partitions)}
    assert rewind == {tp: f for tp, f in fences_after_first.items() if tp in rewind}
    assert set(rewind) >= {(m.topic, m.partition) for m in chunks[1]}
    assert worker.fences_behind(partitions) == {}  # reported once
    again = [m for m in messages if m.offset > fences_after_first[(m.topic, m.partition)]]
    for batch in batches(again, 300):
        worker.process(batch)
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected


def test_the_worker_reads_again_what_redis_lost_and_ends_exact(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    worker = started_worker(settings, tmp_path / "worker.log")
    try:
        events: list[Event] = list(
            simulate(SimulationConfig(customers=60, days=20, seed=41, start=START))
        )
        first, second, third = events[:3000], events[3000:6000], events[6000:]
        produce(settings, first)
        wait_drained(settings)
        after_first = snapshot(redis_client, settings.redis_key_prefix)
        produce(settings, second)
        wait_drained(settings)
        roll_back(redis_client, settings.redis_key_prefix, after_first)  # loses `second`
        produce(settings, third)
        wait_drained(settings)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected
    assert "fences went back" in worker.log_path.read_text()
