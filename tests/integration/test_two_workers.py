"""Two `churnstream worker` processes in one consumer group share six partitions; when one
stops (SIGTERM, or SIGKILL as in a crash) the other takes its partitions over, and after
the stream drains `verify` finds every customer exactly right."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from core.archive import EventArchive
from core.kafka_client import client_config, ensure_topics
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from offline.verify import verify
from tests.integration.test_worker import produce
from tests.support import free_ports
from tests.support_worker import WorkerProcess, promote_recency_model, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=30)
PARTITIONS = 6


def assignments(settings: Settings, timeout: float = 10) -> dict[str, set[tuple[str, int]]]:
    """Member id -> the input partitions Kafka has assigned to it (stable groups only)."""
    admin = AdminClient(client_config(settings))
    future = admin.describe_consumer_groups([settings.consumer_group], request_timeout=timeout)
    group = future[settings.consumer_group].result()
    if group.state != ConsumerGroupState.STABLE:
        return {}
    inputs = {Topics.from_settings(settings).activity, Topics.from_settings(settings).transactions}
    return {
        member.member_id: {
            (tp.topic, tp.partition)
            for tp in member.assignment.topic_partitions
            if tp.topic in inputs
        }
        for member in group.members
    }


def events_applied(worker: WorkerProcess) -> float:
    """The worker's churn_worker_events_applied_total, from its /metrics page."""
    url = f"http://127.0.0.1:{worker.settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "churn_worker_events_applied":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return 0.0


def wait_for_members(
    settings: Settings, count: int, timeout: float = 60
) -> dict[str, set[tuple[str, int]]]:
    deadline = time.monotonic() + timeout
    found: dict[str, set[tuple[str, int]]] = {}
    while time.monotonic() < deadline:
        found = assignments(settings)
        if len(found) == count and all(found.values()):
            return found
        time.sleep(0.5)
    raise TimeoutError(f"the group did not settle on {count} member(s) in {timeout}s: {found}")


@pytest.fixture(params=["batch", "faust"])
def group_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.model_copy(
        update={
            "topic_partitions": PARTITIONS,
            "worker_engine": request.param,
            "worker_session_timeout_seconds": 6.0,
        }
    )


@pytest.fixture
def workers(
    group_settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    promote_recency_model(group_settings)
    ensure_topics(group_settings)
    first, second = (
        WorkerProcess(
            group_settings.model_copy(update={"worker_web_port": port}), tmp_path / f"worker{i}.log"
        )
        for i, port in enumerate(free_ports(2))
    )
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_stopped_workers_partitions_move_to_the_other_and_verify_is_exact(
    how: str, workers: tuple[WorkerProcess, WorkerProcess], group_settings: Settings
) -> None:
    leaving, staying = workers
    topics = Topics.from_settings(group_settings)
    every_partition = {
        (topic, p) for topic in (topics.activity, topics.transactions) for p in range(PARTITIONS)
    }
    shared = wait_for_members(group_settings, 2)
    assert set().union(*shared.values()) == every_partition
    assert all(len(parts) == PARTITIONS for parts in shared.values())  # 3 of each topic

    events = list(simulate(SimulationConfig(customers=150, days=25, seed=31, start=START)))
    half = len(events) // 2
    produce(group_settings, events[:half])
    deadline = time.monotonic() + 60
    while events_applied(leaving) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events_applied(leaving) > 0, "the worker to stop never applied an event"
    if how == "sigkill":
        leaving.kill()
    else:
        leaving.stop()
    produce(group_settings, events[half:])
    wait_drained(group_settings, timeout=180)

    alone = wait_for_members(group_settings, 1)
    assert list(alone.values()) == [every_partition]
    assert staying.process is not None and staying.process.poll() is None, staying.log_tail()

    store = FeatureStore(connect_redis(group_settings), Keys.of(group_settings))
    report = verify(
        store,
        EventArchive(group_settings.archive_dir),
        topics,
        group_settings.retention_days,
        dedup_days=group_settings.dedup_days,
    )
    customers = {e.customer_id for e in events}
    assert report.ok, report.as_dict()
    assert report.customers_compared == len(customers)
    assert (report.mismatched, report.missing, report.extra) == (0, 0, 0)
    assert report.events_counted == len(events)
