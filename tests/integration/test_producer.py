"""EventProducer and `churnstream produce` against a real Kafka broker.

Events are read back with aiokafka, a Kafka client that shares no code with the
confluent-kafka (librdkafka) producer under test.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from churnstream.cli import app
from core.dlq import DeadLetter
from core.events import (
    EventValidationError,
    ItemReactionPayload,
    Like,
    Play,
    PlayPayload,
    Purchase,
    PurchasePayload,
    encode_event,
)
from core.keys import partition_of
from core.producer import EventProducer
from core.settings import Settings
from core.topics import Topics

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def read_topic(
    settings: Settings, topic: str, expected: int, timeout: float = 30.0
) -> list[tuple[bytes | None, bytes, int, list[tuple[str, bytes]]]]:
    """(key, value, partition, headers) of the first ``expected`` records of ``topic``."""

    async def consume() -> list[tuple[bytes | None, bytes, int, list[tuple[str, bytes]]]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while len(records) < expected and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        records.append((m.key, m.value, m.partition, list(m.headers or [])))
        finally:
            await consumer.stop()
        return records

    return asyncio.run(consume())


def sample_events(customers: int = 5, per_customer: int = 20) -> list[Play | Like | Purchase]:
    events: list[Play | Like | Purchase] = []
    for c in range(customers):
        for i in range(per_customer):
            when = T0 + timedelta(minutes=i)
            common = {"event_id": f"e-{c}-{i}", "customer_id": f"C{c:03d}", "event_time": when}
            if i % 5 == 4:
                payload = PurchasePayload(order_id=f"o-{c}-{i}", amount=9.99, quantity=1)
                events.append(Purchase(**common, payload=payload))
            elif i % 2:
                events.append(Like(**common, payload=ItemReactionPayload(item_id=f"s{i}")))
            else:
                events.append(Play(**common, payload=PlayPayload(duration_s=float(i))))
    return events


def test_events_are_read_back_intact_by_an_independent_client(settings: Settings) -> None:
    events = sample_events()
    with EventProducer(settings) as producer:
        for event in events:
            producer.send(event)
    assert producer.stats.delivered == len(events)
    assert producer.stats.failed == 0

    topics = Topics.from_settings(settings)
    activity = [e for e in events if e.topic_kind == "activity"]
    transactions = [e for e in events if e.topic_kind == "transactions"]
    got_activity = read_topic(settings, topics.activity, len(activity))
    got_transactions = read_topic(settings, topics.transactions, len(transactions))

    for expected, got in ((activity, got_activity), (transactions, got_transactions)):
        assert sorted(value for _, value, _, _ in got) == sorted(encode_event(e) for e in expected)
        # keyed by customer: one partition per customer, in production order
        by_customer: dict[bytes, set[int]] = {}
        order: dict[bytes, list[str]] = {}
        for key, value, partition, _ in got:
            assert key is not None
            assert json.loads(value)["customer_id"] == key.decode()
            by_customer.setdefault(key, set()).add(partition)
            order.setdefault(key, []).append(json.loads(value)["event_id"])
        assert all(len(partitions) == 1 for partitions in by_customer.values())
        # ... the one the Redis key layout expects (core.keys: CRC32, librdkafka's default)
        for key, partitions in by_customer.items():
            assert partitions == {partition_of(key.decode(), settings.topic_partitions)}
        for key, ids in order.items():
            sent = [e.event_id for e in expected if e.customer_id == key.decode()]
            assert ids == sent


def test_invalid_event_raises_naming_the_field_and_sends_nothing(settings: Settings) -> None:
    with EventProducer(settings) as producer:
        with pytest.raises(EventValidationError) as caught:
            producer.send(
                Purchase(
                    event_id="e-1",
                    customer_id="C1",
                    event_time=T0,
                    payload=PurchasePayload(order_id="o-1", amount=-3.0),
                )
            )
        assert caught.value.field == "payload.amount"
        with pytest.raises(EventValidationError, match="customer_id"):
            producer.send_json(
                b'{"type": "like", "event_id": "e", "event_time": "2026-01-01T00:00:00Z", "payload": {}}'
            )
        assert producer.stats.sent == 0


def test_produce_cli_reports_invalid_lines_and_sends_every_valid_one(
    settings: Settings, tmp_path: Path, cli_env: None
) -> None:
    valid = [encode_event(e).decode() for e in sample_events(customers=3, per_customer=10)]
    lines = list(valid)
    bad = {
        3: "{not json",
        8: json.dumps({"type": "like", "event_id": "x", "event_time": "2026-01-01T00:00:00Z", "payload": {}}),
        12: json.dumps({"type": "warp", "event_id": "x", "customer_id": "C1", "event_time": "2026-01-01T00:00:00Z", "payload": {}}),
        20: json.dumps({"type": "like", "event_id": "x", "customer_id": "C1", "event_time": "2026-01-01 00:00", "payload": {}}),
        25: json.dumps({"type": "like", "event_id": "x", "customer_id": "C1", "event_time": "2026-01-01T00:00:00Z", "payload": {}, "pad": "x" * 70000}),
    }  # fmt: skip
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = CliRunner().invoke(app, ["produce", str(path), "--to-dlq", "--quiet"])

    assert result.exit_code == 1, result.output
    assert f"sent={len(valid)}" in result.output
    assert f"delivered={len(valid) + len(bad)}" in result.output  # valid + dead letters
    assert f"invalid={len(bad)}" in result.output
    assert "line 8: field 'customer_id': required field is missing" in result.output
    assert "line 12: field 'type': unknown event type 'warp'" in result.output
    assert "line 20: field 'event_time'" in result.output
    assert "line 25:" in result.output and "more than the limit" in result.output

    topics = Topics.from_settings(settings)
    purchases = sum('"type":"purchase"' in line for line in valid)
    got = read_topic(settings, topics.activity, len(valid) - purchases) + read_topic(
        settings, topics.transactions, purchases
    )
    assert sorted(v for _, v, _, _ in got) == sorted(line.encode() for line in valid)

    letters = [
        DeadLetter.from_headers(value, key, headers)
        for key, value, _, headers in read_topic(settings, topics.dlq, len(bad))
    ]
    assert sorted(letter.source_offset for letter in letters) == sorted(bad)
    for letter in letters:
        assert letter.value == bad[letter.source_offset].encode()  # original bytes, unchanged
        assert letter.reason and letter.code and letter.source_file == str(path)


def test_produce_cli_topic_option_rejects_events_of_the_other_topic(
    settings: Settings, tmp_path: Path, cli_env: None
) -> None:
    events = sample_events(customers=1, per_customer=5)  # 4 activity + 1 purchase
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))

    result = CliRunner().invoke(app, ["produce", "--topic", "activity", str(path), "-q"])

    assert result.exit_code == 1
    assert "sent=4" in result.output and "invalid=1" in result.output
    assert "line 5: field 'type': a 'purchase' event belongs on the transactions topic" in (
        result.output
    )
