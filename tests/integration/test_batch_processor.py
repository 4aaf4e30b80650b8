"""The worker's batch processing against a real Redis (and a real Kafka for dead letters):
exact features, order independence, exactly-once under redelivery and replay."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis

from core.aggregates import DAY_SECONDS, HASH_PAGE
from core.archive import EventArchive
from core.events import ItemReactionPayload, Like, encode_event
from core.features import feature_matrix
from core.keys import SEALED_FIELD, TILE_PREFIX, Keys, partition_of
from core.producer import EventProducer
from core.settings import Settings
from core.store import FeatureStore
from stream.batch import BatchProcessor
from stream.messages import RawMessage
from tests.support import every_shard, stored_score
from tests.support_batch import (
    NOW,
    as_messages,
    batches,
    feed,
    offline,
    online_and_offline,
    processor,
    simulated,
    simulated_messages,
    stored,
)
from tests.support_kafka import dead_letters
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def test_redis_state_equals_offline_computation(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated()
    feed(processor(settings, redis_client, producer), events, 500)

    expected = offline(events, settings.retention_days)
    got = stored(settings, redis_client, expected)
    assert {cid: a.snapshot() for cid, a in got.items()} == {
        cid: a.snapshot() for cid, a in expected.items()
    }
    t = int(NOW)
    ids = sorted(expected)
    online_features = feature_matrix([got[c] for c in ids], t)
    assert (online_features == feature_matrix([expected[c] for c in ids], t)).all()
    assert online_features.any()
    # every touched customer has a score, band and the model version
    for cid in expected:
        kept = stored_score(redis_client, Keys.of(settings), cid)
        assert kept is not None and kept.model_version == "test-recency-1"
        assert kept.band in ("low", "medium", "high")
    assert len(every_shard(redis_client, Keys.of(settings), "risk")) == len(expected)


def test_events_shuffled_within_customers_give_the_same_state(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated(seed=4)
    rng = random.Random(9)
    # Delay each event by up to 30 days of arrival, keeping events of different customers
    # interleaved: arrival order differs from event-time order within every customer.
    arrival = sorted(events, key=lambda e: e.event_time + timedelta(days=rng.uniform(0, 30)))
    assert arrival != events
    feed(processor(settings, redis_client, producer), arrival, 300)

    online, in_order = online_and_offline(settings, redis_client, events)
    assert online == in_order


def test_events_older_than_the_retention_give_the_same_state_in_any_order(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """An event further behind its customer's newest than CHURN_RETENTION_DAYS is not
    counted, but the worker still writes what it moves (first seen, plan level), as if it
    had arrived first and its tile had been dropped since."""
    recent = simulated(customers=6, days=5, seed=6)
    old = [
        msgspec.structs.replace(
            e,
            event_id="old-" + e.event_id,
            event_time=e.event_time - timedelta(days=settings.retention_days + 40),
        )
        for e in recent
        if e.type == "session_start"
    ]
    assert old
    late = processor(settings, redis_client, producer)
    reports = feed(late, recent + old, 200)
    assert sum(r.expired for r in reports) == len(old)
    late_state = stored(settings, redis_client, {e.customer_id for e in recent})

    first = settings.model_copy(update={"redis_key_prefix": settings.redis_key_prefix + "-first"})
    feed(processor(first, redis_client, producer), old + recent, 200)
    early_state = stored(first, redis_client, {e.customer_id for e in recent})

    assert {c: a.snapshot() for c, a in late_state.items()} == {
        c: a.snapshot() for c, a in early_state.items()
    }
    for customer_id in {e.customer_id for e in old}:
        oldest = min(int(e.event_time.timestamp()) for e in old if e.customer_id == customer_id)
        assert late_state[customer_id].first_seen == oldest


def test_redelivered_batches_and_replays_change_nothing(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated(customers=25, seed=5)
    worker = processor(settings, redis_client, producer)
    offsets: dict[tuple[str, int], int] = {}
    messages = as_messages(worker.topics, events, offsets)
    for batch in batches(messages, 400):
        worker.process(batch)
    keys = Keys.of(settings)
    before = {
        k: redis_client.hgetall(k) for k in redis_client.scan_iter(match=keys.customer_pattern())
    }

    # 1. a crash before the offset commit: the same messages are delivered again
    redelivered = processor(settings, redis_client, producer)  # a restarted worker: empty memory
    reports = [redelivered.process(batch) for batch in batches(messages, 400)]
    assert sum(r.fenced for r in reports) == len(messages)
    assert sum(r.applied for r in reports) == 0

    # 2. a replay: the same events produced again, at new offsets
    replayed = as_messages(worker.topics, events, offsets)
    reports = [worker.process(batch) for batch in batches(replayed, 400)]
    assert sum(r.duplicates for r in reports) == len(events)
    assert sum(r.applied for r in reports) == 0
    # the archive holds each event once, at its first offset, and nothing else
    archive = EventArchive(settings.archive_dir)
    assert archive.frame(deduplicate=False).num_rows == len(events)
    archived = archive.frame(columns=("event_id", "topic", "partition", "offset"))
    first = {(m.topic, m.partition, m.offset): m for m in messages}
    for row in archived.to_pylist():
        m = first[(row["topic"], row["partition"], row["offset"])]
        assert json.loads(m.value)["event_id"] == row["event_id"]
    assert [encode_event(e) for e in archive.read_events()] == [
        encode_event(e) for e in sorted(events, key=lambda e: (e.event_time, e.event_id))
    ]

    after = {
        k: redis_client.hgetall(k) for k in redis_client.scan_iter(match=keys.customer_pattern())
    }
    strip = ("scored_at",)  # replays re-score (same score, later time); the state is untouched
    assert {
        k: {f: v for f, v in h.items() if f.decode() not in strip} for k, h in after.items()
    } == {k: {f: v for f, v in h.items() if f.decode() not in strip} for k, h in before.items()}


def test_days_beyond_the_dedup_window_are_sealed_and_their_late_events_dead_lettered(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """Tiles older than CHURN_DEDUP_DAYS before a customer's newest activity event live in
    one sealed field without activity hashes; an activity event of such a day is refused
    as too late (dead-lettered, not archived, nothing stored changes), one a day later is
    counted, and a replay of every applied event changes nothing."""
    events = simulated(customers=8, days=60, seed=11, start=datetime(2025, 12, 1, tzinfo=UTC))
    window = settings.dedup_days
    assert window < 60
    worker = processor(settings, redis_client, producer)
    offsets: dict[tuple[str, int], int] = {}
    for batch in batches(as_messages(worker.topics, events, offsets), 500):
        worker.process(batch)
    keys = Keys.of(settings)
    expected = offline(events, settings.retention_days, window)
    got = stored(settings, redis_client, expected)
    assert {c: a.snapshot() for c, a in got.items()} == {
        c: a.snapshot() for c, a in expected.items()
    }

    def customer_hashes() -> dict[str, dict[bytes, bytes]]:
        return {cid: redis_client.hgetall(keys.customer(cid)) for cid in sorted(expected)}

    before = customer_hashes()
    for cid, fields in before.items():
        newest_day = expected[cid].last_activity // DAY_SECONDS
        open_days = [int(name[len(TILE_PREFIX) :]) for name in fields if name.startswith(b"d:")]
        assert all(day > newest_day - window for day in open_days), cid
    assert sum(SEALED_FIELD.encode() in fields for fields in before.values()) >= len(before) // 2
    archive = EventArchive(settings.archive_dir)
    archived = archive.count()
    assert archived == len(events)

    customer = max(expected, key=lambda c: len(expected[c].tile_days()))
    newest_day = expected[customer].last_activity // DAY_SECONDS

    def like_on(day: int, event_id: str) -> Like:
        at = datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
        return Like(
            event_id=event_id, customer_id=customer, event_time=at, payload=ItemReactionPayload()
        )

    outside = worker.process(
        as_messages(worker.topics, [like_on(newest_day - window, "too-late")], offsets)
    )
    assert (outside.too_late, outside.applied, outside.dead_letters) == (1, 0, 1)
    [(letter, _)] = dead_letters(settings, worker.topics.dlq)
    assert (letter.code, letter.field) == ("too_late", "event_time")
    assert f"more than {window} days" in letter.reason
    assert customer_hashes() == before
    assert archive.count() == archived

    replayed = [
        worker.process(b) for b in batches(as_messages(worker.topics, events, offsets), 500)
    ]
    assert sum(r.applied + r.expired for r in replayed) == 0
    assert sum(r.too_late for r in replayed) > 0
    assert sum(r.duplicates + r.too_late for r in replayed) == len(events)
    assert customer_hashes() == before
    assert archive.count() == archived

    inside = worker.process(
        as_messages(worker.topics, [like_on(newest_day - window + 1, "just-in-time")], offsets)
    )
    assert (inside.applied, inside.too_late) == (1, 0)
    after = stored(settings, redis_client, [customer])[customer]
    assert after.tile(newest_day - window + 1)["like"] == (
        expected[customer].tile(newest_day - window + 1)["like"] + 1
    )


# Every dead-letter code the worker writes, with the field it names (None: no field) and
# the original key the message carried (None: a message without a key).
def malformed_cases(
    valid_purchase: bytes, valid_like: bytes
) -> list[tuple[str, str | None, bytes | None, bytes]]:
    like = b'{"type":"like","event_id":"%s","customer_id":%s,"event_time":"%s","payload":{}}'
    return [
        ("invalid_json", None, b"k-json", b"{not json"),
        ("missing_field", "customer_id", b"k-missing",
         b'{"type":"like","event_id":"x1","event_time":"2026-02-02T00:00:00Z","payload":{}}'),
        ("invalid_value", "customer_id", b"k-value", like % (b"x2", b"7", b"2026-02-02T00:00:00Z")),
        ("invalid_time", "event_time", None, like % (b"x3", b'"C1"', b"2026-02-02")),
        ("future_time", "event_time", b"k-future", like % (b"x4", b'"C1"', b"2031-02-02T00:00:00Z")),
        ("past_time", "event_time", b"k-past", like % (b"x5", b'"C1"', b"1999-02-02T00:00:00Z")),
        ("unknown_type", "type", b"k-type",
         b'{"type":"warp","event_id":"x6","customer_id":"C1","event_time":"2026-02-02T00:00:00Z","payload":{}}'),
        ("wrong_topic", "type", b"k-topic", valid_purchase),
        ("too_large", None, b"k-large", b'{"pad":"' + b"x" * 70_000 + b'"}'),
        ("key_mismatch", "customer_id", b"someone-else", valid_like),
    ]  # fmt: skip


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_rest_applies(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    worker = processor(settings, redis_client, producer)
    events, good = simulated_messages(worker.topics, customers=5, days=3, seed=6)
    topic = worker.topics.activity
    cases = malformed_cases(
        encode_event(next(e for e in events if e.type == "purchase")),
        encode_event(next(e for e in events if e.topic_kind == "activity")),
    )
    bad = [
        RawMessage(topic, 0, 10_000 + i, key, value) for i, (_, _, key, value) in enumerate(cases)
    ]
    mixed = good[:50] + bad + good[50:]
    report = worker.process(mixed)

    assert report.dead_letters == len(bad)
    assert report.applied == len(good)
    # the whole topic, read to its end offsets: one dead letter per bad message, no more
    letters = dead_letters(settings, worker.topics.dlq)
    assert len(letters) == len(cases), [letter.code for letter, _ in letters]
    by_offset = {letter.source_offset: (letter, record) for letter, record in letters}
    for message, (code, field, key, value) in zip(bad, cases, strict=True):
        letter, record = by_offset[message.offset]
        assert (letter.code, letter.field) == (code, field), letter.reason
        assert record.key == key and letter.key == key
        assert letter.value == value
        assert letter.source_topic == topic and letter.source_partition == 0
        assert letter.reason
    online, expected = online_and_offline(settings, redis_client, events)
    assert online == expected
    # dead letters are not archived; every valid event is
    assert EventArchive(settings.archive_dir).count() == len(good)


def test_scores_are_taken_as_of_a_fixed_time_when_one_is_set(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated(customers=10, days=7, seed=8)
    as_of = max(e.event_time for e in events) + timedelta(days=3)
    fixed = settings.model_copy(update={"as_of": as_of})
    model = recency_model()
    store = FeatureStore(redis_client, Keys.of(settings))
    feed(BatchProcessor(fixed, store, producer, lambda: model, clock=lambda: NOW), events, 500)
    expected = offline(events, settings.retention_days)
    ids = sorted(expected)
    for cid, agg in zip(ids, [expected[c] for c in ids], strict=True):
        kept = stored_score(redis_client, Keys.of(settings), cid)
        assert kept is not None and kept.scored_at == as_of.timestamp()
        features = feature_matrix([agg], int(as_of.timestamp()), model.feature_names)
        assert kept.score == round(float(model.score_many(features)[0]), 6)


def test_an_event_off_its_customers_partition_goes_to_the_dead_letter_topic(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    events = simulated(customers=5, days=2, seed=8)
    worker = processor(settings, redis_client, producer)
    event = next(e for e in events if partition_of(e.customer_id, settings.topic_partitions) != 0)
    topic = worker.topics.for_kind(event.topic_kind)
    message = RawMessage(topic, 0, 0, event.customer_id.encode(), encode_event(event))
    report = worker.process([message])
    assert (report.dead_letters, report.applied) == (1, 0)
    [(letter, _)] = dead_letters(settings, worker.topics.dlq)
    assert (letter.code, letter.field) == ("wrong_partition", "customer_id")
    expected = partition_of(event.customer_id, settings.topic_partitions)
    assert f"belongs to partition {expected}" in letter.reason
    assert worker.store.load_customer(event.customer_id) is None


def test_a_busy_days_hash_pages_are_stored_then_merged_into_its_tile(
    settings: Settings, redis_client: redis.Redis, producer: EventProducer
) -> None:
    """One customer with 3.5 pages of activity events in a day, in batches of 25, with a
    restart (a new processor, reading Redis) half-way: Redis holds the day's full hash
    pages and the tile with the rest, equals the offline computation, and recognises a
    replay of every event; activity on the next day puts the pages back into the tile,
    and the day leaves the dedup window later."""
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=settings.dedup_days + 3)
    day = int(start.timestamp()) // DAY_SECONDS
    n = 3 * HASH_PAGE + HASH_PAGE // 2
    busy = [
        Like(
            event_id=f"busy-{i}",
            customer_id="busy",
            event_time=start.replace(hour=0) + timedelta(seconds=60 * i),
            payload=ItemReactionPayload(),
        )
        for i in range(n)
    ]
    offsets: dict[tuple[str, int], int] = {}
    feed(processor(settings, redis_client, producer), busy[: n // 2], 25, offsets)
    restarted = processor(settings, redis_client, producer)
    feed(restarted, busy[n // 2 :], 25, offsets)
    key = Keys.of(settings).customer("busy")
    pages = sorted(name for name in redis_client.hkeys(key) if name.startswith(b"h:"))
    assert pages == [f"h:{day}:{page}".encode() for page in range(3)]
    online, expected = online_and_offline(settings, redis_client, busy)
    assert online == expected
    replayed = feed(restarted, busy, 25, offsets)
    assert sum(report.applied for report in replayed) == 0
    assert online_and_offline(settings, redis_client, busy)[0] == expected
    # activity on the next day: the busy day's pages go back into its tile
    next_day = Like(
        event_id="next-day",
        customer_id="busy",
        event_time=start + timedelta(days=1),
        payload=ItemReactionPayload(),
    )
    feed(restarted, [next_day], 25, offsets)
    names = redis_client.hkeys(key)
    assert not [name for name in names if name.startswith(b"h:")]
    assert f"{TILE_PREFIX}{day}".encode() in names
    online, expected = online_and_offline(settings, redis_client, [*busy, next_day])
    assert online == expected
    later = Like(
        event_id="later",
        customer_id="busy",
        event_time=start + timedelta(days=settings.dedup_days + 2),
        payload=ItemReactionPayload(),
    )
    feed(restarted, [later], 25, offsets)
    names = redis_client.hkeys(key)
    assert f"{TILE_PREFIX}{day}".encode() not in names
    everything = [*busy, next_day, later]
    assert online_and_offline(settings, redis_client, everything)[0] == {
        "busy": offline(everything, settings.retention_days, settings.dedup_days)["busy"].snapshot()
    }
