"""Reading topics back: to their end offsets, so a test sees every record that landed
(duplicates included, which reading "until N records arrived" cannot show), as
``read_committed`` readers do (the worker publishes in Kafka transactions) unless asked;
or with aiokafka, a Kafka client that shares no code with the producers under test."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from core.dlq import DeadLetter
from core.kafka_client import client_config, high_watermark
from core.scores import BandChange, decode_band_change
from core.settings import Settings


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def read_to_end(
    settings: Settings, topic: str, timeout: float = 30.0, isolation: str = "read_committed"
) -> list[Record]:
    """Every record of ``topic`` from the beginning up to the end offsets it has now, in
    (partition, offset) order, as a reader with ``isolation.level`` = ``isolation`` sees
    them: by default only committed ones (records of aborted transactions are left out;
    transaction markers take offsets but are not records). The end offsets are the high
    watermarks, so every transaction written by then must be complete: raises TimeoutError
    when the records are not all read in time (e.g. a transaction is still open)."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"read-to-end-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        deadline = time.monotonic() + timeout
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise TimeoutError(f"topic {topic}: {metadata.error}")
        ends = end_offsets(settings, topic, sorted(metadata.partitions), timeout)
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        records: list[Record] = []
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end offsets {ends}")
            for m in consumer.consume(1000, timeout=0.5):
                error = m.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {topic}: {error}")
                partition, offset = m.partition(), m.offset()
                assert partition is not None and offset is not None
                if error is not None:
                    if offset >= ends[partition]:  # the end, past any transaction marker
                        todo.discard(partition)
                    continue
                if offset < ends[partition]:
                    headers = tuple((k, v or b"") for k, v in (m.headers() or []))
                    records.append(
                        Record(topic, partition, offset, m.key(), m.value() or b"", headers)
                    )
                if offset >= ends[partition] - 1:
                    todo.discard(partition)
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def end_offsets(
    settings: Settings, topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    """The high watermarks of ``topic``'s partitions: the offsets after everything written,
    transaction markers included. (A ``read_committed`` consumer would be told the last
    stable offsets instead, which stop before a transaction whose marker is not written
    yet: a reader stopping there would miss records committed a moment ago.)"""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"read-to-end-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        deadline = time.monotonic() + timeout
        return {p: high_watermark(consumer, topic, p, deadline) for p in partitions}
    finally:
        consumer.close()


def dead_letters(settings: Settings, topic: str) -> list[tuple[DeadLetter, Record]]:
    """The dead-letter topic read to its end: each record parsed, beside the record."""
    return [
        (DeadLetter.from_headers(r.value, r.key, list(r.headers)), r)
        for r in read_to_end(settings, topic)
    ]


def band_changes(settings: Settings, topic: str) -> list[tuple[BandChange, Record]]:
    """The ``churn-scores`` topic read to its end: each record decoded, beside the record."""
    return [(decode_band_change(r.value), r) for r in read_to_end(settings, topic)]


def read_topics(
    settings: Settings, topics: list[str], expected: int, timeout: float = 30.0
) -> list[Record]:
    """Every record of ``topics``, read from the beginning by a fresh consumer group, until
    ``expected`` records have arrived or ``timeout`` seconds have passed."""

    async def consume() -> list[Record]:
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=f"{settings.topic_prefix}simulate-check-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list[Record] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(records) < expected and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(
                        Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers))
                        for m in messages
                    )
        finally:
            await consumer.stop()
        return records

    return asyncio.run(consume())
