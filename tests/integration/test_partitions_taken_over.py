"""A `churnstream worker` (batch engine) whose partitions another process takes over without
the consumer group moving them, as a worker does in a rebalance this one has not heard of
yet: the worker's next batch fails (its commit carries an owner token Redis no longer
holds), it gives the batch back to its consumer instead of retrying it, reads the
partitions again from their fences after the next ``consume``, finds them still its own,
takes them over again and applies every event once: `verify` is exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from core.kafka_client import ensure_topics
from core.keys import Keys
from core.settings import Settings
from core.store import FeatureStore
from offline.simulator import SimulationConfig, simulate
from stream.batch import BatchProcessor
from tests.integration.test_worker import produce
from tests.support_worker import (
    WorkerProcess,
    promote_recency_model,
    verify_exact,
    wait_drained,
)

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


def test_a_worker_reads_partitions_taken_over_under_it_again_and_verify_is_exact(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    settings = settings.model_copy(update={"worker_engine": "batch"})
    promote_recency_model(settings)
    ensure_topics(settings)
    keys = Keys.of(settings)
    store = FeatureStore(redis_client, keys)
    events = list(simulate(SimulationConfig(customers=60, days=14, seed=41, start=START)))
    half = len(events) // 2
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    intruder = BatchProcessor(settings, store, None, lambda: None)
    worker.start()
    try:
        produce(settings, events[:half])
        wait_drained(settings)
        intruder.take_over(range(keys.partitions))  # new owner tokens, outboxes fenced
        produce(settings, events[half:])
        wait_drained(settings)
    finally:
        worker.stop()
        intruder.close()

    log = (tmp_path / "worker.log").read_text()
    assert "another worker took partitions over; reading again from" in log, worker.log_tail()
    verify_exact(settings, len({e.customer_id for e in events}), len(events))
