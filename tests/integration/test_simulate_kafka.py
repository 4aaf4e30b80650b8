"""`churnstream simulate --kafka` against a real Kafka broker.

The simulator's events are sent by the CLI (confluent-kafka) and read back with aiokafka, a
Kafka client that shares no code with the producer under test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from churnstream.cli import app
from core.events import topic_kind_of
from core.settings import Settings
from core.topics import Topics

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


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
                        Record(m.topic, m.partition, m.offset, m.key, m.value) for m in messages
                    )
        finally:
            await consumer.stop()
        return records

    return asyncio.run(consume())


def test_simulate_sends_every_event_keyed_by_customer_in_order(
    settings: Settings, cli_env: None, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    args = ["--customers", "30", "--days", "5", "--start", "2024-03-01"]
    result = CliRunner().invoke(app, ["simulate", *args, "--kafka", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert not result.stdout_bytes  # events go to the file and to Kafka, nothing to stdout
    assert Path(f"{out}.truth.csv").exists()

    lines = out.read_bytes().splitlines()
    assert len(lines) > 100
    topics = Topics.from_settings(settings)
    records = read_topics(settings, [topics.activity, topics.transactions], len(lines))

    # Exactly the events of the file: none lost, none duplicated, byte for byte.
    assert Counter(r.value for r in records) == Counter(lines)

    # Each event is on its type's topic, keyed by its customer id.
    customer_of = {}
    for record in records:
        event = json.loads(record.value)
        assert record.topic == topics.for_kind(topic_kind_of(event["type"]))
        assert record.key == event["customer_id"].encode()
        customer_of[record.value] = event["customer_id"]

    # Per topic, each customer's events are in one partition, in the order of the file.
    received: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        received[record.topic, customer_of[record.value]].append(record)
    written: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for line in lines:
        event = json.loads(line)
        topic = topics.for_kind(topic_kind_of(event["type"]))
        written[topic, event["customer_id"]].append(line)
    assert received.keys() == written.keys()
    for topic_and_customer, in_file in written.items():
        got = received[topic_and_customer]
        assert len({r.partition for r in got}) == 1, topic_and_customer
        assert [r.value for r in got] == in_file, topic_and_customer
    assert len({r.partition for r in records}) > 1  # the keys do spread over the partitions
