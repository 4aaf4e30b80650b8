"""Two promises of the worker's batch processing, checked through its public interfaces
against a real Redis and a real Kafka:

* a stale worker (one that lost its partitions to another) is refused: its commit writes
  nothing, so nothing is counted twice;
* ``churn-scores`` carries exactly one record per band change, whether events or the
  re-scoring of silent customers moved the band, and none for a customer whose band
  stayed the same.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import msgspec
import pytest
import redis

from core import metrics
from core.events import Event
from core.keys import Keys
from core.producer import EventProducer
from core.scores import Score
from core.settings import Settings
from core.store import FeatureStore, FenceMoved
from stream.batch import BatchProcessor
from stream.messages import RawMessage
from tests.support import stored_score
from tests.support_batch import (
    NOW,
    as_messages,
    batches,
    online_and_offline,
    processor,
    simulated,
    simulated_messages,
)
from tests.support_kafka import band_changes
from tests.support_models import recency_model

pytestmark = pytest.mark.integration


def redis_contents(client: redis.Redis, prefix: str, owners: bool = True) -> dict[bytes, object]:
    """Every key under ``prefix`` with its value, whatever its type. ``owners=False``
    leaves the partitions' owner tokens out: a worker whose batch is refused takes its
    partitions over again before it retries, which writes fresh tokens (and nothing of the
    batch)."""
    contents: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        if not owners and key.endswith(b":owner"):
            continue
        kind = client.type(key)
        if kind == b"hash":
            contents[key] = client.hgetall(key)
        elif kind == b"zset":
            contents[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"string":
            contents[key] = client.get(key)
        else:
            contents[key] = kind
    return contents


def test_a_stale_worker_is_refused_and_writes_nothing(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    stale = processor(settings, redis_client, producer)
    events, messages = simulated_messages(stale.topics, customers=20, days=14, seed=7)
    half = len(messages) // 2
    stale.process(messages[:half])  # it holds the partitions: their state and fences cached

    # Another worker takes the partitions over (a rebalance the first one has not noticed)
    # and applies the second half.
    taker = processor(settings, redis_client, producer)
    assert taker.process(messages[half:]).applied > 0
    before = redis_contents(redis_client, settings.redis_key_prefix, owners=False)
    retries_before = metrics.WORKER_COMMIT_RETRIES._value.get()

    # The stale worker now gets the same second half. Its cached fences are old: its
    # commit must be refused and it must write nothing, so nothing is counted twice.
    report = stale.process(messages[half:])
    assert report.retries >= 1  # its first commit was refused
    assert metrics.WORKER_COMMIT_RETRIES._value.get() >= retries_before + 1
    assert report.applied == 0 and report.fenced == len(messages) - half
    assert redis_contents(redis_client, settings.redis_key_prefix, owners=False) == before
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected


def test_the_store_refuses_a_commit_whose_fence_moved(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """The same promise one level down: a commit expecting a fence that another writer
    has moved raises FenceMoved and writes none of its customers, scores or fences."""
    worker = processor(settings, redis_client, producer)
    events, messages = simulated_messages(worker.topics, customers=4, days=5, seed=8)
    worker.process(messages)
    keys = Keys.of(settings)
    store = FeatureStore(redis_client, keys)
    m: RawMessage = messages[-1]
    tp = (m.topic, m.partition)
    fence = store.read_fences([tp])[tp]
    customer_id = events[-1].customer_id
    stale = store.load_customers([customer_id])[customer_id]  # read before the move
    store.commit_batch([], [], {tp: (fence, fence + 10)})  # the other writer's commit
    before = redis_contents(redis_client, settings.redis_key_prefix)

    new_event = msgspec.structs.replace(events[-1], event_id="stale-writer-event")
    assert stale.aggregates.apply(new_event, settings.retention_days)  # on the stale state
    score = Score(customer_id, 0.99, "high", "stale", NOW, stale.aggregates.last_event)
    with pytest.raises(FenceMoved):
        store.commit_batch([stale.aggregates], [score], {tp: (fence, fence + 5)})
    assert redis_contents(redis_client, settings.redis_key_prefix) == before
    assert store.read_fences([tp])[tp] == fence + 10


def test_each_band_change_is_published_once_and_no_other(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated(customers=30, days=21, seed=9)
    model = recency_model()
    keys = Keys.of(settings)
    store = FeatureStore(redis_client, keys)
    # Scores are taken as the stream goes (an hour after each batch's newest event), so
    # bands move with the customers' behaviour.
    scoring_time = [0.0]
    wall_clock = [NOW]
    worker = BatchProcessor(
        settings, store, producer, lambda: model, clock=lambda: wall_clock[0],
        score_clock=lambda: scoring_time[0],
    )  # fmt: skip
    customers = sorted({e.customer_id for e in events})

    def bands() -> dict[str, str]:
        stored = {c: stored_score(redis_client, keys, c) for c in customers}
        return {c: s.band for c, s in stored.items() if s is not None}

    # The changes the stored bands show between one batch and the next: what churn-scores
    # must carry, per customer in order, and nothing else.
    expected: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    unchanged = 0
    previous: dict[str, str] = {}
    for batch in batches(as_messages(worker.topics, events, {}), 150):
        touched = {m.key.decode() for m in batch if m.key}
        newest = max(json.loads(m.value)["event_time"] for m in batch)
        scoring_time[0] = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() + 3600
        worker.process(batch)
        now = bands()
        for cid, band in now.items():
            if previous.get(cid) != band:
                expected[cid].append((previous.get(cid), band))
            elif cid in touched:
                unchanged += 1
        previous = now
    from_events = sum(len(v) for v in expected.values())

    # The silent-customer re-scoring, two weeks later: recency rises, bands move up.
    rescored_at = scoring_time[0] + 14 * 86_400
    assert worker.rescore_silent(now=rescored_at, older_than_seconds=0, limit=1000) == len(
        customers
    )
    by_timer = 0
    for cid, band in bands().items():
        if previous[cid] != band:
            expected[cid].append((previous[cid], band))
            previous[cid] = band
            by_timer += 1
        else:
            unchanged += 1
    assert by_timer > 0

    # Then every customer comes back: each event's band is compared with the re-scored
    # one (the state the worker holds), not with the band from before the re-scoring.
    offsets = {(m.topic, m.partition): m.offset for m in as_messages(worker.topics, events, {})}
    latest: dict[str, Event] = {}
    for event in events:
        if event.topic_kind == "activity":
            kept = latest.setdefault(event.customer_id, event)
            latest[event.customer_id] = max(kept, event, key=lambda e: e.event_time)
    back = datetime.fromtimestamp(rescored_at, UTC)
    returns = [
        msgspec.structs.replace(latest[cid], event_id=f"return-{cid}", event_time=back)
        for cid in customers
    ]
    wall_clock[0] = rescored_at
    scoring_time[0] = rescored_at + 3600
    assert worker.process(as_messages(worker.topics, returns, offsets)).applied == len(customers)
    for cid, band in bands().items():
        if previous[cid] != band:
            expected[cid].append((previous[cid], band))
        else:
            unchanged += 1

    records = band_changes(settings, worker.topics.scores)
    got: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for change, record in records:
        assert record.key == change.customer_id.encode()
        got[change.customer_id].append((change.previous_band, change.band))
    assert dict(got) == dict(expected)
    # the run covers every case: first scores, changes by events and by the timer, and
    # customers scored again without a change
    changes = [c for v in expected.values() for c in v]
    assert sum(1 for p, _ in changes if p is None) == len(customers)
    assert from_events > len(customers)
    assert len(changes) > from_events
    assert unchanged > 0
