"""What the fault suite watches: the API's availability, the worker's progress (its offset
fences in Redis) and the dead-letter topic."""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from core.dlq import DeadLetter
from core.kafka_client import client_config, input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from stream.delivery import outbox_group

# --- the API -------------------------------------------------------------------------------


@dataclass
class Availability:
    """Polls of one route: how many, how many answered correctly, what went wrong."""

    polls: int = 0
    ok: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        return self.ok / self.polls if self.polls else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "polls": self.polls,
            "ok": self.ok,
            "availability": round(self.ratio, 6),
            "outcomes": dict(self.outcomes),
        }


class ApiPoller:
    """Polls ``GET /health`` and ``GET /customers/{id}/risk`` (a customer already sent)
    in turn, every ``interval`` seconds, until stopped. A poll succeeds when the API
    answers correctly in time: 200 for health; 200, or 404 for a customer whose events the
    worker has not applied yet, for risk. Anything else (5xx, timeout, refused
    connection) is a failure."""

    def __init__(
        self,
        base_url: str,
        customers: Callable[[], list[str]],
        interval: float = 0.1,
        timeout: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url
        self.customers = customers
        self.interval = interval
        self.timeout = timeout
        self.health = Availability()
        self.risk = Availability()
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            if turn % 2 == 0:
                self._poll(self.health, "/health", {200})
            else:
                known = self.customers()
                if known:
                    customer = known[self._random.randrange(len(known))]
                    self._poll(self.risk, f"/customers/{customer}/risk", {200, 404})
            turn += 1
            self._stop.wait(self.interval)

    def _poll(self, tally: Availability, path: str, good: set[int]) -> None:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=self.timeout) as response:
                status = int(response.status)
                response.read()
        except urllib.error.HTTPError as error:
            status = int(error.code)
        except (OSError, ValueError) as error:  # refused, reset, timed out
            tally.polls += 1
            tally.outcomes[type(error).__name__] += 1
            return
        tally.polls += 1
        tally.outcomes[str(status)] += 1
        if status in good:
            tally.ok += 1


# --- the worker's progress -------------------------------------------------------------------


class Progress:
    """Messages the worker has applied (sum over input partitions of fence + 1)."""

    def __init__(self, settings: Settings) -> None:
        topics = Topics.from_settings(settings)
        self.partitions = [
            (topic, p)
            for topic in (topics.activity, topics.transactions)
            for p in range(settings.topic_partitions)
        ]
        self.store = FeatureStore(connect_redis(settings), Keys.of(settings))

    def applied(self) -> int | None:
        """None while Redis does not answer."""
        try:
            fences = self.store.read_fences(self.partitions)
        except redis.RedisError:
            return None
        return sum(fence + 1 for fence in fences.values())

    def fences(self) -> dict[tuple[str, int], int]:
        return self.store.read_fences(self.partitions)


def end_offsets(settings: Settings, timeout: float = 180) -> dict[tuple[str, int], int]:
    """Next offset to be written per input partition (the high watermarks), retried
    while the broker is still electing leaders (e.g. just after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return input_end_offsets(settings, timeout=30)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


# --- the dead-letter topic -------------------------------------------------------------------


def read_dead_letters(settings: Settings, timeout: float = 120) -> list[DeadLetter]:
    """Every record of the dead-letter topic, from the start to its current end."""
    topic = Topics.from_settings(settings).dlq
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": "faults-dlq-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # The worker publishes dead letters in Kafka transactions: committed ones only.
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        # High watermarks (a read_committed consumer is told the last stable offsets,
        # which stop before a transaction whose commit marker is not written yet).
        watermarks = Consumer(
            {
                **client_config(settings),
                "group.id": "faults-dlq-reader",
                "isolation.level": "read_uncommitted",
            }
        )
        try:
            for p in metadata.partitions:
                low, high = watermarks.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if high > low:
                    ends[p] = high
        finally:
            watermarks.close()
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        letters: list[DeadLetter] = []
        todo = set(ends)
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dead-letter topic not read within {timeout:.0f}s")
            for message in consumer.consume(10_000, timeout=1.0):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {topic}: {error.str()}")
                p, offset = message.partition(), message.offset()
                assert p is not None and offset is not None
                if error is not None:
                    if offset >= ends[p]:  # the end, past any transaction marker
                        todo.discard(p)
                    continue
                if offset >= ends[p]:
                    continue
                if offset >= ends[p] - 1:
                    todo.discard(p)
                letters.append(
                    DeadLetter.from_headers(
                        message.value() or b"",
                        message.key(),
                        message.headers(),  # type: ignore[arg-type]
                    )
                )
        return letters
    finally:
        consumer.close()


def outboxes_published(settings: Settings) -> bool:
    """Whether every partition's outbox is published: the position the worker records in
    Kafka (:mod:`stream.delivery`) is past the last sequence number Redis gave out."""
    keys = Keys.of(settings)
    client = connect_redis(settings)
    try:
        given = {p: client.get(keys.outbox_seq(p)) for p in range(settings.topic_partitions)}
    finally:
        client.close()
    wanted = {p: int(seq) for p, seq in given.items() if seq is not None}
    if not wanted:
        return True
    marker_topic = Topics.from_settings(settings).activity
    reader = Consumer({**client_config(settings), "group.id": outbox_group(settings)})
    try:
        committed = reader.committed([TopicPartition(marker_topic, p) for p in wanted], 30)
    finally:
        reader.close()
    return all(c.offset > wanted[c.partition] for c in committed)
