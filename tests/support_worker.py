"""Running the real worker (`churnstream worker`) as a subprocess, as a user runs it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from churnstream.infra.processes import http_ok, kill_process, start_child, stop_process, tail
from core.archive import EventArchive
from core.kafka_client import client_config, ensure_topics, input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.verify import VerifyReport, verify
from stream.delivery import outbox_group
from tests.support import CLI, REPO_ROOT, child_env
from tests.support_models import recency_model


class WorkerProcess:
    """A `churnstream worker` subprocess that can be killed and restarted."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        self.process = start_child(
            [*CLI, "worker"], name="worker", log_file=self.log_path, ready=self.healthy,
            timeout=timeout, env=child_env(self.settings), cwd=REPO_ROOT, interval=0.3,
        )  # fmt: skip

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.settings.worker_web_port}/health")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None:
            kill_process(self.process)

    def stop(self) -> None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after 30 s."""
        if self.process is not None:
            stop_process(self.process, timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


def promote_recency_model(settings: Settings) -> None:
    """Register the recency model and make it the champion the worker scores with."""
    registry = ModelRegistry(settings, connect_redis(settings))
    registry.promote(registry.register(recency_model(), metrics={}, training={}).version)


def started_worker(settings: Settings, log_path: Path) -> WorkerProcess:
    """A running worker scoring with the recency model, its topics created (the caller
    stops it)."""
    promote_recency_model(settings)
    ensure_topics(settings)
    worker = WorkerProcess(settings, log_path)
    worker.start()
    return worker


def wait_drained(settings: Settings, timeout: float = 120) -> None:
    """Wait until the worker's fences reach the end of every input partition, then until
    what those batches wrote to the outbox is published (:func:`wait_published`)."""
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    deadline = time.monotonic() + timeout
    ends = input_end_offsets(settings)
    while time.monotonic() < deadline:
        fences = store.read_fences(sorted(ends))
        if all(fences[tp] >= end - 1 for tp, end in ends.items()):
            wait_published(settings, max(deadline - time.monotonic(), 1.0))
            return
        time.sleep(0.25)
    behind = {tp: (fences[tp], end - 1) for tp, end in ends.items() if fences[tp] < end - 1}
    raise TimeoutError(f"worker did not drain the topics within {timeout}s: {behind}")


def wait_published(settings: Settings, timeout: float = 60) -> None:
    """Wait until every outbox entry committed to Redis so far is published to Kafka: each
    partition's delivered marker (:mod:`stream.delivery`) is past the last sequence number
    its outbox gave out. A batch's records are published after its commit moved the
    fences, so fences at the end do not yet mean its dead letters are readable."""
    client, keys = connect_redis(settings), Keys.of(settings)
    marker_topic = Topics.from_settings(settings).activity
    partitions = sorted(p for t, p in input_end_offsets(settings) if t == marker_topic)
    markers = Consumer(
        {**client_config(settings), "group.id": outbox_group(settings), "enable.auto.commit": False}
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            last = {p: int(client.get(keys.outbox_seq(p)) or 0) for p in partitions}
            committed = markers.committed(
                [TopicPartition(marker_topic, p) for p in partitions], timeout=10
            )
            behind = {
                tp.partition: (tp.offset, last[tp.partition] + 1)
                for tp in committed
                if last[tp.partition] > 0 and tp.offset < last[tp.partition] + 1
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"outbox not published within {timeout}s (partition: marker, wanted) {behind}"
                )
            time.sleep(0.1)
    finally:
        markers.close()


def customers_in(events: Iterable[object]) -> set[str]:
    return {e.customer_id for e in events}  # type: ignore[attr-defined]


def verify_exact(settings: Settings, customers: int, events: int) -> VerifyReport:
    """Run `verify` against the archive; assert that it compared ``customers`` customers
    and counted ``events`` events, with nothing mismatched, missing or extra."""
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    report = verify(
        store,
        EventArchive(settings.archive_dir),
        Topics.from_settings(settings),
        settings.retention_days,
        dedup_days=settings.dedup_days,
    )
    assert report.ok, report.as_dict()
    assert report.customers_compared == customers
    assert (report.mismatched, report.missing, report.extra) == (0, 0, 0)
    assert report.events_counted == events
    return report
