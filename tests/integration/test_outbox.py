"""Each output record is published once (the outbox, core.outbox + stream.delivery), against a
real Redis and a real Kafka:

* a stale worker (one that lost its partitions to another) is refused, and publishes
  nothing: ``events-dlq`` and ``churn-scores``, read to their end offsets as
  ``read_committed`` readers see them, hold nothing of its refused batch;
* a worker that stops dead after its Redis commit, in the middle of publishing the
  batch's records (its Kafka transaction open), leaves them to the partition's next owner:
  the owner's take-over aborts that transaction and publishes them once;
* a worker publishing each batch's records behind the next one (as ``churnstream
  worker`` does) whose publication fails publishes them once, with its next batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaException, Producer
from prometheus_client import REGISTRY

import stream.delivery as delivery_module
from core.events import Event
from core.kafka_client import client_config, ensure_topics
from core.keys import Keys
from core.outbox import OutboxEntry, OutboxRecord, decode_entry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from stream.batch import BatchProcessor, PartitionsTakenOver
from stream.delivery import OutboxDelivery, transactional_id
from stream.messages import RawMessage
from tests.integration.test_batch_guarantees import redis_contents
from tests.integration.test_batch_processor import NOW, as_messages, offline, simulated, stored
from tests.support import stored_score
from tests.support_kafka import band_changes, dead_letters, read_to_end
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def worker(
    settings: Settings,
    client: redis.Redis,
    version: str,
    delivery: OutboxDelivery | None = None,
    publish_behind: bool = False,
    yield_taken_over: bool = False,
) -> BatchProcessor:
    ensure_topics(settings)
    model = recency_model(version)
    store = FeatureStore(client, Keys.of(settings))
    return BatchProcessor(
        settings,
        store,
        None,
        lambda: model,
        clock=lambda: NOW,
        delivery=delivery,
        publish_behind=publish_behind,
        yield_taken_over=yield_taken_over,
    )


def with_malformed(
    topics: Topics, messages: list[RawMessage], offsets: dict[tuple[str, int], int], tag: str
) -> tuple[list[RawMessage], list[bytes]]:
    """``messages`` plus one malformed message per partition of the activity topic, at the
    partitions' next offsets; and the malformed values."""
    bad = []
    for partition in range(3):
        tp = (topics.activity, partition)
        offset = offsets[tp] = offsets.get(tp, -1) + 1
        value = f"{{not json {tag} {partition}".encode()
        bad.append(RawMessage(topics.activity, partition, offset, b"k", value))
    return messages + bad, [m.value for m in bad]


def two_halves(
    topics: Topics, events: Sequence[Event]
) -> tuple[list[RawMessage], list[bytes], list[RawMessage], list[bytes]]:
    """``events`` as two batches of messages (first half, second half), each with one
    malformed message per partition (:func:`with_malformed`), and each one's malformed
    values."""
    offsets: dict[tuple[str, int], int] = {}
    half = len(events) // 2
    first, first_bad = with_malformed(
        topics, as_messages(topics, events[:half], offsets), offsets, "first"
    )
    second, second_bad = with_malformed(
        topics, as_messages(topics, events[half:], offsets), offsets, "second"
    )
    return first, first_bad, second, second_bad


def chains_are_whole(changes: Sequence[tuple[str, str | None, str]]) -> dict[str, list[str]]:
    """Each customer's bands from ``(customer, previous, band)`` records in order, asserting
    that they chain: a first score first, then each change from the band before it."""
    chains: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for customer_id, previous, band in changes:
        chains[customer_id].append((previous, band))
    for customer_id, chain in chains.items():
        assert chain[0][0] is None, (customer_id, chain)
        for (_, band), (previous, new) in itertools.pairwise(chain):
            assert previous == band != new, (customer_id, chain)
    return {c: [band for _, band in chain] for c, chain in chains.items()}


def published_once_and_exact(
    settings: Settings,
    client: redis.Redis,
    events: Sequence[Event],
    malformed: Sequence[bytes],
    changes_by_version: dict[str, int],
) -> None:
    """Assert that each malformed value is in the dead-letter topic once, that the band
    changes published per model version are those its batches made, chaining per
    customer, and that Redis holds exactly the offline computation of ``events``."""
    topics = Topics.from_settings(settings)
    letters = dead_letters(settings, topics.dlq)
    assert Counter(letter.value for letter, _ in letters) == Counter(malformed)
    records = band_changes(settings, topics.scores)
    assert Counter(change.model_version for change, _ in records) == changes_by_version
    chains_are_whole([(c.customer_id, c.previous_band, c.band) for c, _ in records])
    expected = offline(events, settings.retention_days)
    got = stored(settings, client, expected)
    assert {c: a.snapshot() for c, a in got.items()} == {
        c: a.snapshot() for c, a in expected.items()
    }


def test_a_stale_worker_is_refused_and_publishes_nothing(
    settings: Settings, redis_client: redis.Redis
) -> None:
    events = simulated(customers=20, days=14, seed=7)
    stale = worker(settings, redis_client, "stale-model")
    taker = worker(settings, redis_client, "taker-model")
    topics = stale.topics
    first, first_bad, second, second_bad = two_halves(topics, events)
    try:
        one = stale.process(first)  # it holds the partitions: state and fences cached
        assert one.band_changes > 0 and one.dead_letters == 3

        # Another worker takes the partitions over (a rebalance the first has not noticed)
        # and applies the second half, malformed messages included.
        two = taker.process(second)
        assert two.applied > 0 and two.dead_letters == 3 and two.band_changes > 0
        before = redis_contents(redis_client, settings.redis_key_prefix, owners=False)

        # The stale worker gets the same second half: from its cached state it makes the
        # same kind of records (with its own model version), but its commit is refused
        # and nothing of that batch may reach Kafka or Redis.
        three = stale.process(second)
        assert three.retries >= 1  # its first commit was refused
        assert three.applied == 0 and three.fenced == len(second)
        assert (three.dead_letters, three.band_changes) == (0, 0)
        assert redis_contents(redis_client, settings.redis_key_prefix, owners=False) == before
    finally:
        stale.close()
        taker.close()

    published_once_and_exact(
        settings,
        redis_client,
        events,
        first_bad + second_bad,
        {"stale-model": one.band_changes, "taker-model": two.band_changes},
    )


def test_a_worker_yielding_partitions_taken_over_leaves_them_to_their_new_owner(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With ``yield_taken_over`` (the batch engine), a batch refused because another
    worker took its partitions over is not retried: retrying would take them over again
    and disturb their new owner. It raises PartitionsTakenOver with the fences Redis holds
    (the consumer reads the partitions again from there once the group has spoken), having
    written nothing, owner tokens included, and forgotten the partitions."""
    events = simulated(customers=20, days=14, seed=19)
    stale = worker(settings, redis_client, "stale-model", yield_taken_over=True)
    taker = worker(settings, redis_client, "taker-model")
    topics = stale.topics
    first, first_bad, second, second_bad = two_halves(topics, events)
    keys = Keys.of(settings)
    store = FeatureStore(redis_client, keys)
    try:
        one = stale.process(first)  # it holds the partitions: state and fences cached
        # A rebalance the stale worker has not heard of: the taker takes the partitions
        # over before any of their messages reaches it (no fence moves).
        taker.take_over(range(3))
        before = redis_contents(redis_client, settings.redis_key_prefix)

        with pytest.raises(PartitionsTakenOver) as taken:
            stale.process(second)
        partitions = sorted(
            {(m.topic, m.partition) for m in second} | {(topics.transactions, p) for p in range(3)}
        )
        assert taken.value.fences == store.read_fences(partitions)
        assert redis_contents(redis_client, settings.redis_key_prefix) == before
        assert stale.cached_customers == 0
        assert not any(stale.delivery.ready(p) for p in range(3))

        two = taker.process(second)  # the new owner, undisturbed
        assert two.retries == 0 and two.applied > 0 and two.dead_letters == 3
    finally:
        stale.close()
        taker.close()

    published_once_and_exact(
        settings,
        redis_client,
        events,
        first_bad + second_bad,
        {"stale-model": one.band_changes, "taker-model": two.band_changes},
    )


class Crash(BaseException):
    """The process stops dead here (as under SIGKILL): no clean-up code runs."""


class StopsBeforeTheKafkaCommit(OutboxDelivery):
    """Publishes like :class:`OutboxDelivery` until :attr:`armed`; then it produces a
    batch's records in a Kafka transaction and stops dead before committing it: what a
    worker killed between its Redis commit and the end of its Kafka transaction leaves."""

    armed = False

    def deliver(self, appended: Mapping[int, tuple[int, Sequence[OutboxRecord]]]) -> None:
        if not self.armed or not appended:
            super().deliver(appended)
            return
        for partition, (_, records) in appended.items():
            producer = self._owned[partition].producer
            producer.begin_transaction()
            for record in records:
                producer.produce(record.topic, record.value, record.key, headers=record.headers)
            assert producer.flush(30) == 0
        raise Crash


def test_records_a_dead_worker_committed_but_did_not_publish_are_published_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    events = simulated(customers=15, days=10, seed=11)
    keys = Keys.of(settings)
    client = redis_client
    dies = StopsBeforeTheKafkaCommit(settings, client, keys)
    zombie = worker(settings, client, "m1", delivery=dies)
    topics = zombie.topics
    offsets: dict[tuple[str, int], int] = {}
    half = len(events) // 2
    first = as_messages(topics, events[:half], offsets)
    second, bad = with_malformed(
        topics, as_messages(topics, events[half:], offsets), offsets, "crash"
    )
    owner = worker(settings, client, "m1")
    try:
        zombie.process(first)  # published normally
        published = len(read_to_end(settings, topics.scores))
        assert published > 0

        # The zombie commits the second half to Redis, starts publishing and dies.
        dies.armed = True
        with pytest.raises(Crash):
            zombie.process(second)
        fences = zombie.store.read_fences(sorted({(m.topic, m.partition) for m in second}))
        assert all(fences[(m.topic, m.partition)] >= m.offset for m in second)
        waiting = [
            decode_entry(member)
            for p in range(3)
            for member in client.zrange(keys.outbox(p), 0, -1)
        ]
        assert sum(len(e.records) for e in waiting) >= len(bad)
        # its records are in Kafka, in a transaction that is still open
        uncommitted = read_to_end(settings, topics.dlq, isolation="read_uncommitted")
        assert sorted(r.value for r in uncommitted) == sorted(bad)

        # The next owner takes the partitions over: the open transaction is aborted and
        # the outbox published once.
        owner.take_over(range(3))
        assert all(owner.delivery.ready(p) for p in range(3))
        report = owner.process(second)  # Kafka redelivers the batch: all fenced
        assert report.fenced == len(second) and report.applied == 0
    finally:
        owner.close()

    # Yet another worker takes the partitions over, with the published entries still in
    # the outboxes (trimmed only by a partition's next commit): it must not publish them
    # again. Its batch trims them.
    more, more_bad = with_malformed(topics, [], offsets, "after")
    owner2 = worker(settings, client, "m1")
    try:
        owner2.process(more)
    finally:
        owner2.close()
    for p in range(3):
        assert [decode_entry(m).seq for m in client.zrange(keys.outbox(p), 0, -1)] == [
            int(client.get(keys.outbox_seq(p)))  # type: ignore[arg-type]
        ]

    letters = dead_letters(settings, topics.dlq)
    assert Counter(letter.value for letter, _ in letters) == Counter(bad + more_bad)
    with_aborted = read_to_end(settings, topics.dlq, isolation="read_uncommitted")
    # the zombie's (aborted), the owner's, owner2's
    assert len(with_aborted) == 2 * len(bad) + len(more_bad)
    records = band_changes(settings, topics.scores)
    assert len(records) > published
    bands = chains_are_whole([(c.customer_id, c.previous_band, c.band) for c, _ in records])
    stored_bands = {
        c: stored_score(client, keys, c).band  # type: ignore[union-attr]
        for c in bands
    }
    assert {c: chain[-1] for c, chain in bands.items()} == stored_bands


def test_records_published_behind_the_next_batch_are_published_once_when_that_fails(
    settings: Settings, redis_client: redis.Redis
) -> None:
    events = simulated(customers=15, days=12, seed=13)
    behind = worker(settings, redis_client, "m1", publish_behind=True)
    topics = behind.topics
    offsets: dict[tuple[str, int], int] = {}
    third = len(events) // 3
    parts = [events[:third], events[third : 2 * third], events[2 * third :]]
    batches, bad = [], []
    for i, part in enumerate(parts):
        batch, values = with_malformed(topics, as_messages(topics, part, offsets), offsets, f"b{i}")
        batches.append(batch)
        bad += values
    intruders: list[Producer] = []
    try:
        behind.take_over(range(3))
        first = behind.process(batches[0])
        assert first.dead_letters == 3 and first.band_changes > 0
        behind.settle()

        # Another producer with the partitions' transactional ids fences this worker's:
        # the publication of the next batch, started behind it, fails.
        for p in range(3):
            intruder = Producer(
                {**client_config(settings), "transactional.id": transactional_id(settings, p)}
            )
            intruder.init_transactions(30)
            intruders.append(intruder)
        second = behind.process(batches[1])  # committed; its publication is failing
        assert second.retries == 0 and second.dead_letters == 3
        deadline = time.monotonic() + 30
        while behind.delivery.publishing and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not behind.delivery.publishing
        # the failed publication's entry shows as waiting (churn_worker_outbox_waiting_entries)
        assert behind.delivery.waiting_entries() >= 1
        assert REGISTRY.get_sample_value("churn_worker_outbox_waiting_entries") >= 1

        # The next batch sees the failure before its commit, takes the partitions over
        # again (fencing the intruders) and publishes the second batch's records first.
        third_report = behind.process(batches[2])
        assert third_report.retries >= 1
        assert third_report.applied > 0 and third_report.dead_letters == 3
        behind.settle()
        assert all(behind.delivery.ready(p) for p in range(3))
        assert behind.delivery.waiting_entries() == 0
    finally:
        for intruder in intruders:
            intruder.purge()
        behind.close()

    letters = dead_letters(settings, topics.dlq)
    assert Counter(letter.value for letter, _ in letters) == Counter(bad)
    records = band_changes(settings, topics.scores)
    assert len(records) >= first.band_changes + third_report.band_changes
    bands = chains_are_whole([(c.customer_id, c.previous_band, c.band) for c, _ in records])
    keys = Keys.of(settings)
    stored_bands = {
        c: stored_score(redis_client, keys, c).band  # type: ignore[union-attr]
        for c in bands
    }
    assert {c: chain[-1] for c, chain in bands.items()} == stored_bands
    expected = offline(events, settings.retention_days)
    got = stored(settings, redis_client, expected)
    assert {c: a.snapshot() for c, a in got.items()} == {
        c: a.snapshot() for c, a in expected.items()
    }


class HangsOnce(OutboxDelivery):
    """Publishes like :class:`OutboxDelivery` until :attr:`armed`; then the first
    publication hangs until released, and then fails: a librdkafka transactional call
    that does not honour its timeout (seen after a broker restart)."""

    armed = False

    def __init__(self, settings: Settings, client: redis.Redis, keys: Keys) -> None:
        super().__init__(settings, client, keys)
        self.hung = threading.Event()
        self.release = threading.Event()

    def _publish(self, partition: int, owned: Any, entries: Sequence[OutboxEntry]) -> None:
        if self.armed and not self.hung.is_set():
            self.hung.set()
            self.release.wait(120)
            raise KafkaException("the stuck call gave up")
        super()._publish(partition, owned, entries)


def test_a_publication_failure_seen_while_rescoring_loses_nothing(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker gone quiet after a batch whose publication is stuck: the failure surfaces
    in the next re-scoring tick, after the tick's commit. The tick must not fail for it
    (the worker would exit): the stuck partition is taken over again by the next tick,
    and the batch's records and the re-score's are each published once."""
    monkeypatch.setattr(delivery_module, "_WATCHDOG_SECONDS", 1.0)
    events = simulated(customers=15, days=12, seed=17)
    hangs = HangsOnce(settings, redis_client, Keys.of(settings))
    behind = worker(settings, redis_client, "m1", delivery=hangs, publish_behind=True)
    scored = max(e.event_time for e in events).timestamp() + 3_600
    behind.score_clock = lambda: scored
    later = scored + 14 * 86_400  # two weeks of silence: bands move up
    customers = {e.customer_id for e in events}
    try:
        behind.take_over(range(3))
        hangs.armed = True
        assert behind.process(as_messages(behind.topics, events, {})).band_changes > 0
        assert hangs.hung.wait(30)  # one partition's publication is stuck
        time.sleep(1.5)  # past the watchdog

        assert behind.rescore_silent(later, older_than_seconds=3_600, limit=1000) == len(customers)
        assert not all(hangs.ready(p) for p in range(3))  # the stuck one was dropped
        assert behind.rescore_silent(later, older_than_seconds=3_600, limit=1000) == 0
        behind.settle()  # the second tick took it over again
        assert all(hangs.ready(p) for p in range(3))
        assert hangs.waiting_entries() == 0
    finally:
        behind.close()
        hangs.release.set()

    records = band_changes(settings, behind.topics.scores)
    bands = chains_are_whole([(c.customer_id, c.previous_band, c.band) for c, _ in records])
    assert set(bands) == customers
    keys = Keys.of(settings)
    stored_bands = {
        c: stored_score(redis_client, keys, c).band  # type: ignore[union-attr]
        for c in bands
    }
    assert {c: chain[-1] for c, chain in bands.items()} == stored_bands
    assert any(c.scored_at == later for c, _ in records)  # the re-score's, published too


def test_a_publication_stuck_past_the_watchdog_is_taken_over_and_published_once(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "_WATCHDOG_SECONDS", 1.0)
    events = simulated(customers=15, days=10, seed=13)
    hangs = HangsOnce(settings, redis_client, Keys.of(settings))
    processor = worker(settings, redis_client, "m1", delivery=hangs, publish_behind=True)
    topics = processor.topics
    first, first_bad, second, second_bad = two_halves(topics, events)
    try:
        processor.take_over(range(3))
        hangs.armed = True
        processor.process(first)  # its records are published behind: one partition hangs
        assert hangs.hung.wait(30)
        time.sleep(1.5)  # past the watchdog
        # The next batch finds the stuck publication, drops its partition and takes it
        # over again (a new producer), which publishes what the stuck one left.
        report = processor.process(second)
        assert report.retries >= 1
        processor.settle()
        assert hangs.waiting_entries() == 0
    finally:
        processor.close()
        hangs.release.set()
    letters = dead_letters(settings, topics.dlq)
    assert Counter(letter.value for letter, _ in letters) == Counter(first_bad + second_bad)
