"""Reading the input topics in micro-batches with confluent-kafka (librdkafka).

One ``consume(batch_size, within)`` call returns up to ``batch_size`` messages from C in
a single Python call, which costs about a microsecond a message; Faust's stream
iteration costs over a hundred (see docs/benchmarks.md). Progress lives in Redis: when a
partition is assigned, reading starts right after its fence, so Kafka's committed offsets
are only informational (they may run a batch ahead of Redis: a batch's commit runs
while the next one is worked on, :mod:`stream.commit_behind`) and a crash anywhere loses
and repeats nothing. Should Redis lose
committed writes (its fences go back: a failover to a lagging replica, a restore from a
backup), the partitions concerned are read again from the fences Redis holds — noticed at
the next batch, or within ``FENCE_CHECK_SECONDS`` while idle. An assigned partition's
outbox is taken over before its first message is read (:mod:`stream.delivery`: records a
previous owner committed but did not publish are published first); a take-over that
failed is tried again with the partition's next batch, or within ``FENCE_CHECK_SECONDS``
while idle.

Every ``CHURN_RESCORE_TICK_SECONDS``, between two batches, the customers of the assigned
partitions whose score went stale are scored again on this same thread
(:meth:`~stream.batch.BatchProcessor.rescore_silent`), committed and published as a batch is.

After each batch, what the worker keeps (the customers it loaded) is frozen out of the
garbage collector's passes (:class:`~stream.garbage_collector.KeptStateFreezer`).

The two input topics must have the same partition count: the range assignor then gives
partition *p* of both to the same worker, which therefore owns all of a customer's state.

A batch refused because another worker took one of its partitions over (a rebalance this
worker has not heard of yet) is not retried: those partitions are read again from their
fences after the next ``consume``, which delivers the rebalance. If they are still this
worker's, their next batch takes them over again; if not, the new owner has them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from core.kafka_client import client_config, input_fetch_config
from core.redis_client import REDIS_ERRORS
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from stream.batch import BatchAbandoned, BatchProcessor, FencesWentBack, PartitionsTakenOver
from stream.garbage_collector import KeptStateFreezer
from stream.messages import RawMessage

log = logging.getLogger(__name__)

FENCE_CHECK_SECONDS = 5.0  # while idle, how often to check that Redis kept our fences


class BatchConsumer:
    """Feeds a :class:`~stream.batch.BatchProcessor` from Kafka until stopped."""

    def __init__(self, settings: Settings, processor: BatchProcessor, store: FeatureStore):
        self.settings = settings
        self.processor = processor
        self.store = store
        self.topics = Topics.from_settings(settings)
        self.freezer = KeptStateFreezer()
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
                **input_fetch_config(settings),
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
        next_check = time.monotonic() + FENCE_CHECK_SECONDS
        rescore_every = self.settings.rescore_tick_seconds
        next_rescore = time.monotonic() + rescore_every
        try:
            while not stop.is_set():
                messages = self.consumer.consume(self.settings.batch_size, timeout=within)
                batch = self._valid(messages)
                try:
                    if batch:  # returns once applied, or its commit sent (retries inside)
                        self.processor.process(batch)
                    else:  # idle: finish the last batch's commit
                        self.processor.flush()
                    if time.monotonic() >= next_rescore:  # between batches, busy or not
                        self.processor.rescore_silent()
                        next_rescore = time.monotonic() + rescore_every
                except FencesWentBack as went_back:
                    self._rewind({**went_back.fences, **self._fences_behind()})
                    continue
                except PartitionsTakenOver as taken:  # the next consume tells whose they are
                    self._rewind(taken.fences, "another worker took partitions over")
                    continue
                except BatchAbandoned:  # stopping: not acknowledged, applied after restart
                    log.warning("stopping with a batch not applied messages=%d", len(batch))
                    break
                if batch:
                    self._commit(batch)
                    self.freezer.after_batch()
                    continue
                self.freezer.when_idle()
                self.processor.settle(wait=False)  # records published behind: any failure?
                if time.monotonic() >= next_check:
                    self._check_fences()
                    self._take_over_pending()
                    next_check = time.monotonic() + FENCE_CHECK_SECONDS
        finally:
            self.consumer.close()  # leaves the group: partitions move at once
            self.processor.close()

    def _fences_behind(self) -> dict[tuple[str, int], int]:
        assigned = [(tp.topic, tp.partition) for tp in self.consumer.assignment()]
        return self.processor.fences_behind(assigned)

    def _check_fences(self) -> None:
        try:
            behind = self._fences_behind()
        except REDIS_ERRORS as exc:  # Redis is away: the next batch retries anyway
            log.warning("fence check failed error=%r", exc)
            return
        if behind:
            self._rewind(behind)

    def _take_over_pending(self) -> None:
        """Publish what assigned partitions' outboxes hold when their take-over failed at
        assignment and no message has come since (:meth:`BatchProcessor.take_over`)."""
        self.processor.take_over_pending({tp.partition for tp in self.consumer.assignment()})

    def _rewind(
        self, fences: Mapping[tuple[str, int], int], why: str = "offset fences went back in Redis"
    ) -> None:
        """Read these partitions again from right after the fences Redis holds (if they
        are still assigned: a seek of a partition revoked meanwhile only logs)."""
        log.warning(
            "%s; reading again from %s",
            why,
            " ".join(f"{t}[{p}]@{f + 1}" for (t, p), f in sorted(fences.items())),
        )
        for (topic, partition), fence in fences.items():
            offset = fence + 1 if fence >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # no longer ours: its new owner starts at the fence
                log.warning("seek failed %s[%d] error=%r", topic, partition, exc)

    def _valid(self, messages: Sequence[Message]) -> list[RawMessage]:
        """The messages of a ``consume`` call as RawMessages (errors logged and skipped).
        Cost: five accessor calls and one named tuple per message (well under 1 µs)."""
        batch: list[RawMessage] = []
        append = batch.append
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error topic=%s error=%s", m.topic(), error.str())
                continue
            value = m.value()
            append(
                RawMessage(
                    m.topic(),  # type: ignore[arg-type]
                    m.partition(),  # type: ignore[arg-type]
                    m.offset(),  # type: ignore[arg-type]
                    m.key(),
                    value if value is not None else b"",
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
        # Before any message is read: fence the previous owners' outbox producers and
        # publish what they left (stream.delivery).
        self.processor.take_over(p.partition for p in partitions)
        consumer.assign(partitions)
        log.info(
            "partitions assigned %s",
            " ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.processor.forget_partitions(p.partition for p in partitions)
        log.info("partitions revoked %s", " ".join(f"{p.topic}[{p.partition}]" for p in partitions))
