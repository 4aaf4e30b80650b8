"""A Redis outage (a restart, a failover) must not kill the worker: its timers and its
batches wait for Redis to come back, then carry on. Uses a Redis server of its own (it is
stopped mid-test) and the session's Kafka broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from churnstream.infra.processes import stop_pid
from churnstream.infra.redis_server import RedisServer
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from offline.simulator import SimulationConfig, simulate
from tests.integration.test_worker import produce
from tests.support_batch import offline
from tests.support_worker import started_worker, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)


def test_the_worker_rides_out_a_redis_restart(
    settings: Settings, own_redis: RedisServer, tmp_path: Path
) -> None:
    worker_settings = settings.model_copy(
        update={
            "redis_url": f"redis://{own_redis.address}/0",
            "rescore_after_seconds": 1,
            "rescore_tick_seconds": 0.2,  # many ticks while Redis is away
        }
    )
    client = connect_redis(worker_settings)
    worker = started_worker(worker_settings, tmp_path / "worker.log")
    try:
        events = list(simulate(SimulationConfig(customers=30, days=10, seed=51, start=START)))
        produce(worker_settings, events[: len(events) // 2])
        wait_drained(worker_settings)

        stop_pid(int(own_redis.pid_file.read_text()), own_redis.markers, timeout=30)
        produce(worker_settings, events[len(events) // 2 :])  # arrives while Redis is away
        time.sleep(3)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        own_redis.wait_ready(own_redis.start(), timeout=30)

        wait_drained(worker_settings)
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    store = FeatureStore(client, Keys.of(worker_settings))
    expected = offline(events, worker_settings.retention_days)
    got = {c: s.aggregates.snapshot() for c, s in store.load_customers(sorted(expected)).items()}
    assert got == {c: a.snapshot() for c, a in expected.items()}
