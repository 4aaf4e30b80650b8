"""The online state on a Redis Cluster of three masters, under faults: four workers in one
group with one SIGKILLed, and a master SIGKILLed mid-stream then restarted from its
append-only file. After each, the stream drains and `verify` finds every customer exactly
right (nothing lost, nothing counted twice)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from churnstream.infra.processes import is_ours, read_pid_file, wait_gone
from churnstream.infra.redis_cluster import (
    ClusterNode,
    cluster_ok,
    free_cluster_port,
    start_local_cluster,
    stop_local_cluster,
)
from core.kafka_client import ensure_topics, input_end_offsets
from core.keys import Keys
from core.redis_client import client_is_cluster, connect_redis
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from offline.verify import VerifyReport
from tests.integration.test_two_workers import events_applied, wait_for_members
from tests.integration.test_worker import produce
from tests.support import free_ports
from tests.support_worker import WorkerProcess, promote_recency_model, wait_drained
from tests.support_worker import verify_exact as support_verify_exact

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=30)
PARTITIONS = 8


def verify_exact(settings: Settings, events: list[object]) -> VerifyReport:
    assert client_is_cluster(connect_redis(settings))
    customers = {e.customer_id for e in events}  # type: ignore[attr-defined]
    return support_verify_exact(settings, len(customers), len(events))


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: object) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": redis_cluster.url,  # type: ignore[attr-defined]
            "topic_partitions": PARTITIONS,
            "worker_engine": "batch",
            "worker_session_timeout_seconds": 6.0,
        }
    )


@pytest.fixture
def four_workers(cluster_settings: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    promote_recency_model(cluster_settings)
    ensure_topics(cluster_settings)
    workers = [
        WorkerProcess(
            cluster_settings.model_copy(update={"worker_web_port": port}),
            tmp_path / f"worker{i}.log",
        )
        for i, port in enumerate(free_ports(4))
    ]
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def test_four_workers_on_a_cluster_one_sigkilled_verify_is_exact(
    four_workers: list[WorkerProcess], cluster_settings: Settings
) -> None:
    shared = wait_for_members(cluster_settings, 4, timeout=90)
    assert all(len(parts) == 4 for parts in shared.values())  # 2 of each input topic
    events = list(simulate(SimulationConfig(customers=200, days=20, seed=41, start=START)))
    half = len(events) // 2
    produce(cluster_settings, events[:half])
    victim = four_workers[1]
    deadline = time.monotonic() + 60
    while events_applied(victim) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events_applied(victim) > 0, "the worker to kill never applied an event"
    victim.kill()
    produce(cluster_settings, events[half:])
    wait_drained(cluster_settings, timeout=240)
    remaining = wait_for_members(cluster_settings, 3, timeout=60)
    assert len(set().union(*remaining.values())) == 2 * PARTITIONS
    verify_exact(cluster_settings, events)


# --- a master killed mid-stream ------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[ClusterNode, ...]]:
    """A cluster for this test alone (the test kills one of its masters)."""
    nodes = start_local_cluster(tmp_path / "cluster", free_cluster_port(), timeout=60)
    try:
        yield nodes
    finally:
        stop_local_cluster(nodes)


VICTIM_PARTITIONS = (3, 7)  # the first master serves slots 0-5460: the tags {3} and {7}
REDIS_ERROR = re.compile(
    r"level=warning .*error=\S*(ConnectionError|ClusterDownError|TimeoutError)"
)


def fences_between(settings: Settings, ends: dict[tuple[str, int], int]) -> bool:
    """Whether the worker has applied some of these partitions' events but not all."""
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    fences = store.read_fences(sorted(ends))
    applied = sum(fence + 1 for fence in fences.values())
    return 0 < applied < sum(ends.values())


def test_a_master_killed_mid_stream_and_restarted_from_its_aof_verify_is_exact(
    own_cluster: tuple[ClusterNode, ...], settings: Settings, tmp_path: Path
) -> None:
    cluster = settings.model_copy(
        update={
            "redis_url": own_cluster[0].url,
            "topic_partitions": PARTITIONS,
            "worker_engine": "batch",
            "batch_size": 50,
        }
    )
    promote_recency_model(cluster)
    ensure_topics(cluster)
    events = list(simulate(SimulationConfig(customers=200, days=30, seed=43, start=START)))
    produce(cluster, events)
    # the partitions whose keys the killed master holds must still have events to apply
    ends = {
        key: end for key, end in input_end_offsets(cluster).items() if key[1] in VICTIM_PARTITIONS
    }
    worker = WorkerProcess(cluster, tmp_path / "worker.log")
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not fences_between(cluster, ends) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fences_between(cluster, ends), "the worker was not mid-stream"

        victim = own_cluster[0]
        pid = read_pid_file(victim.pid_file)
        assert pid is not None
        assert is_ours(pid, victim.markers)
        os.kill(pid, signal.SIGKILL)  # as in a crash: no shutdown, no last fsync
        assert wait_gone(pid, 10)
        time.sleep(4)  # the others mark it failed (node timeout 2 s): the cluster is down
        assert not cluster_ok(own_cluster)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()

        victim.wait_ready(victim.start(), timeout=60)  # replays its append-only file
        deadline = time.monotonic() + 30
        while not cluster_ok(own_cluster) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster_ok(own_cluster)
        wait_drained(cluster, timeout=240)
        assert worker.process.poll() is None, worker.log_tail()
        # it met the outage (in a batch, a commit sent behind or a re-scoring tick) and went on
        assert REDIS_ERROR.search(worker.log_tail(1_000_000)), worker.log_tail()
    finally:
        worker.stop()
    verify_exact(cluster, events)
    # the restarted master holds its partitions' fences: nothing went back
    direct = redis.Redis(host="127.0.0.1", port=victim.port)
    assert direct.get(
        Keys.of(cluster).fence(Topics.from_settings(cluster).activity, VICTIM_PARTITIONS[0])
    )
    direct.close()
