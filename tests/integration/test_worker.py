"""The running worker end to end: real Kafka, real Redis, `churnstream worker` subprocesses.

Checks the streaming issue's promises: every touched customer is scored within seconds;
Redis state equals the offline computation of the same functions over the same events;
a SIGKILL mid-stream loses and double-counts nothing; replays change nothing; malformed
messages land in the dead-letter topic while the worker keeps going; silent customers are
re-scored on a timer and their risk rises.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from core.aggregates import CustomerAggregates
from core.archive import EventArchive
from core.dlq import DeadLetter
from core.events import Event
from core.kafka_client import client_config, ensure_topics
from core.keys import Keys
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from stream.rescore import rescore_stale_customers
from tests.integration.test_producer import read_topic
from tests.support_models import recency_model
from tests.support_worker import WorkerProcess, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


@pytest.fixture(params=["batch", "faust"])
def worker_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every test runs against both ingestion engines."""
    return settings.model_copy(
        update={
            "worker_engine": request.param,
            "rescore_after_seconds": 2,
            "rescore_tick_seconds": 0.5,
            "model_check_seconds": 0.5,
            "archive_compact_seconds": 1.0,
        }
    )


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    registry = ModelRegistry(worker_settings, connect_redis(worker_settings))
    registry.promote(registry.register(recency_model(), metrics={}, training={}).version)
    ensure_topics(worker_settings)
    process = WorkerProcess(worker_settings, tmp_path / "worker.log")
    process.start()
    yield process
    process.stop()


def events_of(customers: int, days: int, seed: int) -> list[Event]:
    return list(simulate(SimulationConfig(customers=customers, days=days, seed=seed, start=START)))


def produce(settings: Settings, events: Sequence[Event]) -> None:
    with EventProducer(settings, create_topics=False) as producer:
        for event in events:
            producer.send(event)
    assert producer.stats.delivered == len(events)


def offline_state(events: Sequence[Event], settings: Settings) -> dict[str, dict[str, object]]:
    states: dict[str, CustomerAggregates] = {}
    for event in events:
        states.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(
            event, settings.retention_days
        )
    return {cid: agg.snapshot() for cid, agg in states.items()}


def online_state(settings: Settings, customer_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    store = FeatureStore(connect_redis(settings), Keys(settings.redis_key_prefix))
    loaded = store.load_customers(sorted(customer_ids))
    return {cid: customer.aggregates.snapshot() for cid, customer in loaded.items()}


def test_every_customer_is_scored_and_features_equal_the_offline_computation(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=60, days=20, seed=11)
    sent_at = time.monotonic()
    produce(worker_settings, events)
    customers = {e.customer_id for e in events}
    keys = Keys(worker_settings.redis_key_prefix)
    while redis_client.zcard(keys.risk) < len(customers) and time.monotonic() - sent_at < 30:
        time.sleep(0.1)
    assert redis_client.zcard(keys.risk) == len(customers), worker.log_tail()
    wait_drained(worker_settings)
    assert online_state(worker_settings, sorted(customers)) == offline_state(
        events, worker_settings
    )
    for cid in customers:
        fields = redis_client.hgetall(keys.customer(cid))
        assert fields[b"model_version"] == recency_model().version.encode()
    # the worker's archive segments become Parquet files on its compaction timer
    archive = EventArchive(worker_settings.archive_dir)
    deadline = time.monotonic() + 15
    while (archive.segments() or not archive.files()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert archive.files() and not archive.segments(), worker.log_tail()
    assert archive.frame(deduplicate=False).num_rows == len(events)


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    worker: WorkerProcess, worker_settings: Settings
) -> None:
    events = events_of(customers=80, days=20, seed=12)
    half = len(events) // 2
    produce(worker_settings, events[:half])
    time.sleep(1.0)  # the worker is mid-way through the first half
    worker.kill()
    produce(worker_settings, events[half:])
    worker.start()
    time.sleep(1.5)
    worker.kill()  # and once more, shortly after the restart
    worker.start()
    wait_drained(worker_settings)
    customers = sorted({e.customer_id for e in events})
    assert online_state(worker_settings, customers) == offline_state(events, worker_settings)
    # the archive holds every event (killed workers' segments included), once after dedup
    archived = EventArchive(worker_settings.archive_dir).frame(columns=("event_id",))
    assert sorted(archived.column("event_id").to_pylist()) == sorted(e.event_id for e in events)


def test_replaying_the_same_events_changes_nothing(
    worker: WorkerProcess, worker_settings: Settings
) -> None:
    events = events_of(customers=40, days=15, seed=13)
    produce(worker_settings, events)
    wait_drained(worker_settings)
    customers = sorted({e.customer_id for e in events})
    before = online_state(worker_settings, customers)
    produce(worker_settings, events)  # the same event ids, at new offsets
    wait_drained(worker_settings)
    assert (
        online_state(worker_settings, customers) == before == offline_state(events, worker_settings)
    )


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    worker: WorkerProcess, worker_settings: Settings
) -> None:
    topics = Topics.from_settings(worker_settings)
    malformed = [
        b"{not json",
        b'{"type":"like","event_id":"m1","event_time":"2026-02-02T00:00:00Z","payload":{}}',
        b'{"type":"like","event_id":"m2","customer_id":["C1"],"event_time":"2026-02-02T00:00:00Z","payload":{}}',
        b'{"type":"teleport","event_id":"m3","customer_id":"C1","event_time":"2026-02-02T00:00:00Z","payload":{}}',
        b'{"type":"like","event_id":"m4","customer_id":"C1","event_time":"2041-02-02T00:00:00Z","payload":{}}',
        b'{"type":"like","event_id":"m5","customer_id":"C1","event_time":"2026-02-02","payload":{}}',
    ]
    raw = Producer(client_config(worker_settings))
    for value in malformed:
        raw.produce(topics.activity, value, b"C1")
    assert raw.flush(30) == 0
    events = events_of(customers=10, days=5, seed=14)
    produce(worker_settings, events)  # valid events after the bad ones
    wait_drained(worker_settings)

    letters = [
        DeadLetter.from_headers(value, key, headers)
        for key, value, _, headers in read_topic(worker_settings, topics.dlq, len(malformed))
    ]
    assert sorted(letter.value for letter in letters) == sorted(malformed)
    assert all(letter.reason and letter.source_topic == topics.activity for letter in letters)
    customers = sorted({e.customer_id for e in events})
    assert online_state(worker_settings, customers) == offline_state(events, worker_settings)
    assert worker.process is not None and worker.process.poll() is None


def test_silent_customers_are_rescored_on_the_timer_and_their_risk_rises(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=15, days=10, seed=15)
    produce(worker_settings, events)
    wait_drained(worker_settings)
    keys = Keys(worker_settings.redis_key_prefix)
    first = {m.decode(): s for m, s in redis_client.zrange(keys.scored_at, 0, -1, withscores=True)}
    assert first
    time.sleep(4)  # no new events; rescore_after is 2 s, the timer ticks every 0.5 s
    later = {m.decode(): s for m, s in redis_client.zrange(keys.scored_at, 0, -1, withscores=True)}
    assert all(later[c] > first[c] for c in first), "the timer did not re-score silent customers"

    # Directional: the same customers, a week of silence later, are riskier (the timer's
    # function, run with a clock a week ahead).
    store = FeatureStore(redis_client, keys)
    before = dict(redis_client.zrange(keys.risk, 0, -1, withscores=True))
    with EventProducer(worker_settings, create_topics=False) as producer:
        rescored = rescore_stale_customers(
            store, recency_model(), producer, Topics.from_settings(worker_settings),
            now=time.time() + 7 * 86400, older_than_seconds=0, limit=1000,
        )  # fmt: skip
    assert rescored == len(before)
    after = dict(redis_client.zrange(keys.risk, 0, -1, withscores=True))
    assert all(after[c] > before[c] for c in before)


def test_a_new_champion_is_picked_up_without_a_restart_or_lost_events(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=30, days=12, seed=16)
    half = len(events) // 2
    produce(worker_settings, events[:half])
    wait_drained(worker_settings)
    keys = Keys(worker_settings.redis_key_prefix)
    first_customers = {e.customer_id for e in events[:half]}
    versions = {redis_client.hget(keys.customer(c), "model_version") for c in first_customers}
    assert versions == {recency_model().version.encode()}

    registry = ModelRegistry(worker_settings, redis_client)
    new = recency_model(version="test-recency-2")
    registry.promote(registry.register(new, metrics={}, training={}).version)
    time.sleep(1.5)  # the worker checks the champion every 0.5 s
    produce(worker_settings, events[half:])
    wait_drained(worker_settings)

    pid_before = worker.process.pid if worker.process else None
    assert worker.process is not None and worker.process.poll() is None
    assert worker.process.pid == pid_before
    later_customers = {e.customer_id for e in events[half:]}
    versions = {redis_client.hget(keys.customer(c), "model_version") for c in later_customers}
    assert versions == {b"test-recency-2"}
    customers = sorted({e.customer_id for e in events})
    assert online_state(worker_settings, customers) == offline_state(events, worker_settings)
