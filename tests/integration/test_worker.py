"""The running worker end to end: real Kafka, real Redis, `churnstream worker` subprocesses.

Checks the streaming issue's promises: every touched customer is scored within seconds;
Redis state equals the offline computation of the same functions over the same events;
a SIGKILL mid-stream loses and double-counts nothing; replays change nothing; malformed
messages land in the dead-letter topic while the worker keeps going; silent customers are
re-scored on a timer and their risk rises.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis
from confluent_kafka import Message, Producer

from core.aggregates import CustomerAggregates
from core.archive import EventArchive
from core.customer_encoding import decode_score
from core.events import Event, encode_event
from core.features import feature_matrix
from core.kafka_client import client_config, input_end_offsets
from core.keys import SCORE_FIELD, Keys
from core.model import LinearModel
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from tests.integration.test_batch_processor import malformed_cases
from tests.support import every_shard, stored_score
from tests.support_kafka import dead_letters
from tests.support_models import engagement_model, linear_model, recency_model
from tests.support_worker import WorkerProcess, started_worker, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

TopicPartition = tuple[str, int]

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


@pytest.fixture
def worker_overrides() -> dict[str, object]:
    """Settings a test changes for its worker (parametrize ``worker_overrides`` to set)."""
    return {}


@pytest.fixture(params=["batch", "faust"])
def worker_settings(
    settings: Settings, request: pytest.FixtureRequest, worker_overrides: dict[str, object]
) -> Settings:
    """Every test runs against both ingestion engines."""
    return settings.model_copy(
        update={
            "worker_engine": request.param,
            "rescore_after_seconds": 2,
            "rescore_tick_seconds": 0.5,
            "model_check_seconds": 0.5,
            "archive_compact_seconds": 1.0,
            **worker_overrides,
        }
    )


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = started_worker(worker_settings, tmp_path / "worker.log")
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
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    loaded = store.load_customers(sorted(customer_ids))
    return {cid: customer.aggregates.snapshot() for cid, customer in loaded.items()}


def kill_mid_stream(
    worker: WorkerProcess, settings: Settings, since: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """SIGKILL the worker while it is part-way through a partition: once a fence has moved
    past ``since`` (so the worker holds partitions and applies events) and still lies a few
    batches short of its partition's end. Asserts that the fences it left lie strictly
    between ``since`` and the end on some partition, and returns them."""
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    ends = input_end_offsets(settings)
    partitions = sorted(ends)
    margin = 3 * settings.batch_size
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        fences = store.read_fences(partitions)
        if any(since[tp] < fences[tp] < ends[tp] - 1 - margin for tp in partitions):
            worker.kill()
            left = store.read_fences(partitions)
            assert any(since[tp] < left[tp] < ends[tp] - 1 for tp in partitions), (
                f"the kill did not interrupt work: fences {left}, from {since}, ends {ends}"
            )
            return left
        time.sleep(0.005)
    raise AssertionError(f"the worker never got part-way: {worker.log_tail()}")


def assert_scores_are_the_models(
    settings: Settings, client: redis.Redis, customers: Sequence[str], model: LinearModel
) -> None:
    """Every stored score and band (and the risk index) is ``model``'s own computation on
    the customer's stored state at the time the score was taken."""
    keys = Keys.of(settings)
    loaded = FeatureStore(client, keys).load_customers(sorted(customers))
    for cid, customer in loaded.items():
        # the hash and the risk index in one snapshot (the timer may re-score in between)
        pipe = client.pipeline(transaction=True)
        risk = keys.risk(keys.shard_of(cid))
        data, indexed = pipe.hget(keys.customer(cid), SCORE_FIELD).zscore(risk, cid).execute()
        stored = decode_score(cid, data)
        assert stored.model_version == model.version
        at = int(stored.scored_at)
        features = feature_matrix([customer.aggregates], at, model.feature_names)
        expected = float(model.score_many(features)[0])
        # (the score is rounded to 6 places; its time to the millisecond, which may round
        # up to the next whole second: at most ~1e-6 of score)
        assert stored.score == pytest.approx(expected, abs=3e-6), cid
        assert stored.band == model.band_of(expected), cid
        assert indexed == stored.score


def wait_for_versions(
    client: redis.Redis, settings: Settings, customers: Sequence[str], version: str,
    worker: WorkerProcess, timeout: float = 30,
) -> None:  # fmt: skip
    keys = Keys.of(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        versions = {
            getattr(stored_score(client, keys, c), "model_version", None) for c in customers
        }
        if versions == {version}:
            return
        time.sleep(0.2)
    raise AssertionError(f"not every customer re-scored with {version}: {worker.log_tail()}")


def worker_metrics(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_every_customer_is_scored_and_features_equal_the_offline_computation(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=60, days=20, seed=11)
    sent_at = time.monotonic()
    produce(worker_settings, events)
    customers = {e.customer_id for e in events}
    keys = Keys.of(worker_settings)

    def scored() -> int:
        return len(every_shard(redis_client, keys, "risk"))

    while scored() < len(customers) and time.monotonic() - sent_at < 30:
        time.sleep(0.1)
    assert scored() == len(customers), worker.log_tail()
    wait_drained(worker_settings)
    assert online_state(worker_settings, sorted(customers)) == offline_state(
        events, worker_settings
    )
    for cid in customers:
        stored = stored_score(redis_client, keys, cid)
        assert stored is not None and stored.model_version == recency_model().version
    # the worker's archive segments become Parquet files on its compaction timer
    archive = EventArchive(worker_settings.archive_dir)
    deadline = time.monotonic() + 15
    while (archive.segments() or not archive.files()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert archive.files() and not archive.segments(), worker.log_tail()
    assert archive.frame(deduplicate=False).num_rows == len(events)


@pytest.mark.parametrize("worker_overrides", [{"batch_size": 50}], ids=["batches_of_50"])
def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    worker: WorkerProcess, worker_settings: Settings
) -> None:
    events = events_of(customers=80, days=20, seed=12)
    half = len(events) // 2
    partitions = sorted(input_end_offsets(worker_settings))
    produce(worker_settings, events[:half])
    # killed part-way through the first half
    first = kill_mid_stream(worker, worker_settings, dict.fromkeys(partitions, -1))
    produce(worker_settings, events[half:])
    worker.start()
    # and once more, after the restarted worker has applied some but not all of the rest
    kill_mid_stream(worker, worker_settings, first)
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
    events = events_of(customers=10, days=5, seed=14)
    purchase = next(e for e in events if e.type == "purchase")
    like = msgspec.structs.replace(
        next(e for e in events if e.topic_kind == "activity"), event_id="keyed-elsewhere"
    )
    cases = malformed_cases(encode_event(purchase), encode_event(like))
    raw = Producer(client_config(worker_settings))
    where: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset) it landed at

    def delivered(error: object, message: Message) -> None:
        assert error is None, error
        where[message.value()] = (message.partition(), message.offset())

    for _, _, key, value in cases:
        raw.produce(topics.activity, value, key, on_delivery=delivered)
    assert raw.flush(30) == 0 and len(where) == len(cases)
    produce(worker_settings, events)  # valid events after the bad ones
    wait_drained(worker_settings)

    # the whole dead-letter topic, read to its end: each bad message once, as it was sent
    letters = dead_letters(worker_settings, topics.dlq)
    assert len(letters) == len(cases), [letter.code for letter, _ in letters]
    by_value = {letter.value: (letter, record) for letter, record in letters}
    for code, field, key, value in cases:
        letter, record = by_value[value]
        assert (letter.code, letter.field) == (code, field), letter.reason
        assert record.key == key and letter.key == key
        assert letter.reason and letter.source_topic == topics.activity
        assert (letter.source_partition, letter.source_offset) == where[value]
    customers = sorted({e.customer_id for e in events})
    assert online_state(worker_settings, customers) == offline_state(events, worker_settings)
    assert worker.process is not None and worker.process.poll() is None


def test_silent_customers_are_rescored_on_the_timer_and_their_risk_rises(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=15, days=10, seed=15)
    customers = sorted({e.customer_id for e in events})
    # A model that reads silence on this population's scale: log-odds from -2 to 2 across
    # the customers' days since their last activity, so a few seconds of silence move
    # every score by more than its 6 stored decimals (however silent the customer).
    states: dict[str, CustomerAggregates] = {}
    for event in events:
        states.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(
            event, worker_settings.retention_days
        )
    silence = feature_matrix(
        list(states.values()), int(time.time()), ("days_since_last_activity",)
    )[:, 0]
    low, high = float(silence.min()), float(silence.max())
    middle, spread = (low + high) / 2, max(high - low, 0.5)
    model = linear_model(
        "test-silence-1", {"days_since_last_activity": 4.0}, intercept=0.0,
        mean={"days_since_last_activity": middle},
        scale={"days_since_last_activity": spread},
    )  # fmt: skip
    registry = ModelRegistry(worker_settings, redis_client)
    registry.promote(registry.register(model, metrics={}, training={}).version)
    deadline = time.monotonic() + 15
    while 'churn_worker_model_info{version="test-silence-1"} 1.0' not in worker_metrics(
        worker_settings
    ):
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)

    produce(worker_settings, events)
    wait_drained(worker_settings)
    wait_for_versions(redis_client, worker_settings, customers, model.version, worker)
    keys = Keys.of(worker_settings)

    def scores() -> dict[str, tuple[float, float]]:
        return {
            c: (s.scored_at, s.score)
            for c in customers
            for s in [stored_score(redis_client, keys, c)]
            if s is not None
        }

    first = scores()
    # No new events from here on: only the worker's timer (every 0.5 s, for scores older
    # than 2 s) writes scores. Wait until it has re-scored everyone at least 8 s later.
    deadline = time.monotonic() + 40
    while not all(at >= first[c][0] + 8 for c, (at, _) in scores().items()):
        assert time.monotonic() < deadline, "the timer did not re-score silent customers"
        time.sleep(0.5)
    later = scores()
    assert all(later[c][1] > first[c][1] for c in customers), (first, later)
    assert_scores_are_the_models(worker_settings, redis_client, customers, model)
    timer_scores = re.findall(
        r'churn_worker_scores_total\{band="\w+",trigger="timer"\} (\d+)',
        worker_metrics(worker_settings),
    )
    assert sum(float(n) for n in timer_scores) >= len(customers)


def test_a_new_champion_is_picked_up_without_a_restart_or_lost_events(
    worker: WorkerProcess, worker_settings: Settings, redis_client: redis.Redis
) -> None:
    events = events_of(customers=30, days=12, seed=16)
    half = len(events) // 2
    produce(worker_settings, events[:half])
    wait_drained(worker_settings)
    first_customers = sorted({e.customer_id for e in events[:half]})
    assert_scores_are_the_models(worker_settings, redis_client, first_customers, recency_model())

    # a champion with other weights: every customer's score changes
    registry = ModelRegistry(worker_settings, redis_client)
    new = engagement_model("test-engagement-2")
    registry.promote(registry.register(new, metrics={}, training={}).version)
    pid_before = worker.process.pid if worker.process else None
    produce(worker_settings, events[half:])
    wait_drained(worker_settings)
    customers = sorted({e.customer_id for e in events})
    wait_for_versions(redis_client, worker_settings, customers, new.version, worker)
    assert_scores_are_the_models(worker_settings, redis_client, customers, new)

    # and a rollback brings the previous model's own scores back
    assert registry.rollback() == recency_model().version
    wait_for_versions(redis_client, worker_settings, customers, recency_model().version, worker)
    assert_scores_are_the_models(worker_settings, redis_client, customers, recency_model())

    assert worker.process is not None and worker.process.poll() is None
    assert worker.process.pid == pid_before
    assert online_state(worker_settings, customers) == offline_state(events, worker_settings)
