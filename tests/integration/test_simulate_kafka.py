"""`churnstream simulate --kafka` against a real Kafka broker.

The simulator's events are sent by the CLI (confluent-kafka) and read back with aiokafka, a
Kafka client that shares no code with the producer under test.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.events import topic_kind_of
from core.settings import Settings
from core.topics import Topics
from tests.support_kafka import Record, read_topics

pytestmark = pytest.mark.integration


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
