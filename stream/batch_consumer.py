"""Reading the input topics in micro-batches with confluent-kafka (librdkafka).

One ``consume(batch_size, within)`` call returns up to ``batch_size`` messages from C in
a single Python call, which costs about a microsecond a message; Faust's stream
iteration costs over a hundred (see docs/benchmarks.md). Progress lives in Redis: when a
partition is assigned, reading starts right after its fence, so Kafka's committed offsets
are only informational and a crash anywhere loses and repeats nothing.

The two input topics must have the same partition count: the range assignor then gives
partition *p* of both to the same worker, which therefore owns all of a customer's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from core.kafka_client import client_config
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from stream.batch import BatchProcessor, RawMessage

log = logging.getLogger(__name__)


class BatchConsumer:
    """Feeds a :class:`~stream.batch.BatchProcessor` from Kafka until stopped."""

    def __init__(self, settings: Settings, processor: BatchProcessor, store: FeatureStore):
        self.settings = settings
        self.processor = processor
        self.store = store
        self.topics = Topics.from_settings(settings)
        session_ms = int(settings.worker_session_timeout_seconds * 1000)
        self.consumer = Consumer(
            {
                **client_config(settings),
                "group.id": settings.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                "session.timeout.ms": session_ms,
                "heartbeat.interval.ms": max(session_ms // 4, 1000),
                "max.poll.interval.ms": 300_000,
                "fetch.wait.max.ms": min(settings.batch_within_ms, 100),
                "queued.max.messages.kbytes": 65_536,
            }
        )

    def run(self, stop: threading.Event) -> None:
        """Consume, apply and commit batches until ``stop`` is set."""
        self.consumer.subscribe(
            [self.topics.activity, self.topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        within = self.settings.batch_within_ms / 1000
        try:
            while not stop.is_set():
                messages = self.consumer.consume(self.settings.batch_size, timeout=within)
                batch = self._valid(messages)
                if not batch:
                    continue
                self.processor.process(batch)  # returns once applied (retries inside)
                self._commit(batch)
        finally:
            self.consumer.close()  # leaves the group: partitions move at once

    def _valid(self, messages: Sequence[Message]) -> list[RawMessage]:
        batch = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error topic=%s error=%s", m.topic(), error.str())
                continue
            value = m.value()
            batch.append(
                RawMessage(
                    topic=m.topic(),  # type: ignore[arg-type]
                    partition=m.partition(),  # type: ignore[arg-type]
                    offset=m.offset(),  # type: ignore[arg-type]
                    key=m.key(),  # type: ignore[arg-type]
                    value=value if value is not None else b"",  # type: ignore[arg-type]
                )
            )
        return batch

    def _commit(self, batch: Sequence[RawMessage]) -> None:
        """Tell Kafka how far we got (for lag monitoring; Redis fences are authoritative)."""
        newest: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic, m.partition)
            newest[key] = max(newest.get(key, -1), m.offset)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in newest.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # informational only: never stop the stream for it
            log.warning("offset commit failed error=%r", exc)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        fences = self.store.read_fences([(p.topic, p.partition) for p in partitions])
        for p in partitions:
            fence = fences[(p.topic, p.partition)]
            p.offset = fence + 1 if fence >= 0 else OFFSET_BEGINNING
        self.processor.forget_partitions(p.partition for p in partitions)
        consumer.assign(partitions)
        log.info(
            "partitions assigned %s",
            " ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.processor.forget_partitions(p.partition for p in partitions)
        log.info("partitions revoked %s", " ".join(f"{p.topic}[{p.partition}]" for p in partitions))
