"""`churnstream replay` against the real Kafka broker, Redis and a running worker.

Records are read back with aiokafka (a client that shares no code with the producer), so
what is checked is what landed in the topics: per-customer order, nothing twice after a
SIGKILL and ``--resume``, and the same Redis state after replaying the same events twice.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.infra.processes import kill_process
from core.events import Event, encode_event, topic_kind_of
from core.kafka_client import ensure_topics
from core.keys import Keys
from core.settings import Settings
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from tests.integration.test_worker import offline_state, online_state
from tests.support import CLI, REPO_ROOT, child_env, every_shard
from tests.support_kafka import Record, read_topics
from tests.support_worker import WorkerProcess, started_worker, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


def events_of(customers: int, days: int, seed: int) -> list[Event]:
    return list(simulate(SimulationConfig(customers=customers, days=days, seed=seed, start=START)))


def write(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    return path


def input_topics(settings: Settings) -> list[str]:
    topics = Topics.from_settings(settings)
    return [topics.activity, topics.transactions]


def replay_cli(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["replay", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_replay_sends_each_event_once_in_per_customer_time_order(
    settings: Settings, cli_env: None, tmp_path: Path
) -> None:
    events = events_of(customers=60, days=8, seed=21)
    # Every customer's events are spread over three files; the third is shuffled, so the
    # replay has to sort it on disk (in runs of 1,000) and merge it with the other two.
    parts = [events[0::3], events[1::3], events[2::3]]
    random.Random(5).shuffle(parts[2])
    paths = [write(tmp_path / f"part{i}.jsonl", part) for i, part in enumerate(parts)]
    summary = replay_cli(*map(str, paths), "--sort-buffer", "1000")
    assert summary["sent"] == len(events) and summary["sorted_on_disk"] == [str(paths[2])]

    records = read_topics(settings, input_topics(settings), len(events))
    assert Counter(r.value for r in records) == Counter(encode_event(e) for e in events)

    # The documented order: event time, then input file, then line; per customer and
    # topic, the records of one partition must come in exactly that order.
    rank = {
        encode_event(e): (e.event_time, file, line)
        for file, part in enumerate(parts)
        for line, e in enumerate(part)
    }
    received: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        event = json.loads(record.value)
        assert record.topic == Topics.from_settings(settings).for_kind(topic_kind_of(event["type"]))
        assert record.key == event["customer_id"].encode()
        received[record.topic, event["customer_id"]].append(record)
    for (topic, customer), got in received.items():
        assert len({r.partition for r in got}) == 1, (topic, customer)
        values = [r.value for r in got]
        assert values == sorted(values, key=rank.__getitem__), (topic, customer)
        times = [json.loads(v)["event_time"] for v in values]
        assert times == sorted(times)
    assert len({r.partition for r in records}) > 1


def _checkpoint(path: Path) -> dict[str, object] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return None


def test_resume_after_a_sigkill_sends_nothing_twice(
    settings: Settings, cli_env: None, tmp_path: Path
) -> None:
    events = events_of(customers=150, days=10, seed=22)
    path = write(tmp_path / "events.jsonl", events)
    checkpoint = tmp_path / "replay.json"
    span = (events[-1].event_time - events[0].event_time).total_seconds()
    # Paced to last ~12 s (a second of replay is ~20 simulated hours), checkpointing every
    # 2 s: the kill lands mid-way, a second after a checkpoint, so events were sent after
    # the last checkpoint (which the resume must find in Kafka and not resend).
    args = [str(path), "--checkpoint", str(checkpoint), "--checkpoint-seconds", "2"]
    ensure_topics(settings)
    process = subprocess.Popen(
        [*CLI, "replay", *args, "--speed", str(span / 12), "--quiet"],
        env=child_env(settings), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline:
            state = _checkpoint(checkpoint)
            delivered = int(state["delivered"]) if state is not None else 0  # type: ignore[call-overload]
            if seen is not None and delivered != seen:
                break  # a checkpoint was just written, past a fifth of the events
            if delivered > len(events) // 5:
                seen = delivered
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        time.sleep(random.uniform(0.8, 1.2))  # well before the next checkpoint
        kill_process(process)  # as in a crash: no checkpoint on the way out
    finally:
        kill_process(process)
    killed_at = _checkpoint(checkpoint)
    assert killed_at is not None and not killed_at["complete"]
    assert 0 < int(killed_at["delivered"]) < len(events)  # type: ignore[call-overload]
    in_kafka_before = len(read_topics(settings, input_topics(settings), len(events), timeout=10))
    assert in_kafka_before > int(killed_at["delivered"])  # type: ignore[call-overload]

    summary = replay_cli(*args, "--resume")
    assert summary["status"] == "complete" and summary["resumed"] is True
    assert int(summary["already_delivered"]) == in_kafka_before - int(killed_at["delivered"])  # type: ignore[call-overload]
    assert int(summary["sent"]) == len(events) - in_kafka_before  # type: ignore[call-overload]

    records = read_topics(settings, input_topics(settings), len(events) + 1, timeout=15)
    by_id = Counter(json.loads(r.value)["event_id"] for r in records)
    assert len(records) == len(events)
    assert by_id == Counter(e.event_id for e in events)


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = started_worker(settings, tmp_path / "worker.log")
    yield process
    process.stop()


def redis_snapshot(
    client: redis.Redis, settings: Settings, customers: list[str]
) -> dict[str, object]:
    keys = Keys.of(settings)
    return {
        "customers": {c: client.hgetall(keys.customer(c)) for c in customers},
        "risk": every_shard(client, keys, "risk"),
        "scored_at": every_shard(client, keys, "scored_at"),
    }


def test_replaying_the_same_events_twice_leaves_redis_identical(
    worker: WorkerProcess, settings: Settings, cli_env: None, redis_client: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    events = events_of(customers=40, days=15, seed=23)
    half = [e for e in events if zlib.crc32(e.customer_id.encode()) % 2]
    other = [e for e in events if not zlib.crc32(e.customer_id.encode()) % 2]
    paths = [str(write(tmp_path / "a.jsonl", half)), str(write(tmp_path / "b.jsonl", other))]
    customers = sorted({e.customer_id for e in events})

    assert replay_cli(*paths)["sent"] == len(events)
    wait_drained(settings)
    first = redis_snapshot(redis_client, settings, customers)
    assert all(first["customers"].values())  # type: ignore[attr-defined]
    assert len(first["risk"]) == len(customers)  # type: ignore[arg-type]
    assert online_state(settings, customers) == offline_state(events, settings)

    again = replay_cli(*paths)  # a new replay of the same files: the same event ids again
    assert again["sent"] == len(events)
    wait_drained(settings)
    assert len(read_topics(settings, input_topics(settings), 2 * len(events))) == 2 * len(events)
    assert redis_snapshot(redis_client, settings, customers) == first
    assert worker.process is not None and worker.process.poll() is None
