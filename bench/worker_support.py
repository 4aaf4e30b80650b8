"""Shared parts of the worker benchmarks: the model, isolated settings, the worker
subprocess, Kafka and Redis helpers, and the inputs."""

from __future__ import annotations

import logging
import math
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from bench.children import BenchChild
from bench.common import CLI, DATA_DIR, child_env
from bench.cpu import free_port, process_cpu_seconds
from core.events import Event, encode_event
from core.kafka_client import client_config
from core.model import LinearModel
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from stream.messages import RawMessage

log = logging.getLogger("bench.worker")

PARTITIONS_OF = tuple[str, int]

MODEL_CACHE = DATA_DIR / "worker-bench-model.json"
_FENCE_POLL_S = 0.005


# --- the model --------------------------------------------------------------------------


def champion_model() -> LinearModel:
    """A real trained LinearModel (the bootstrap trainer on a small simulation), cached."""
    if MODEL_CACHE.exists():
        return LinearModel.from_json(MODEL_CACHE.read_text())
    from offline.train import bootstrap_from_simulation

    model, _, _ = bootstrap_from_simulation(customers=600, days=63, version="bench-bootstrap-600c")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    MODEL_CACHE.write_text(model.to_json())
    return model


# --- isolated settings, the worker subprocess -------------------------------------------


def isolated(base: Settings, tag: str, root: Path) -> Settings:
    """Settings with their own topics, keys, consumer group, web port, model and run dirs."""
    uid = uuid.uuid4().hex[:8]
    home = root / f"{tag}-{uid}"
    home.mkdir(parents=True)
    return base.model_copy(
        update={
            "topic_prefix": f"bench-{tag}-{uid}.",
            "redis_key_prefix": f"bench-{tag}-{uid}",
            "consumer_group": f"bench-{tag}-{uid}",
            "worker_web_port": free_port(),
            "model_dir": home / "models",
            "run_dir": home / "run",
        }
    )


def promote_champion(settings: Settings, model: LinearModel) -> None:
    registry = ModelRegistry(settings, connect_redis(settings))
    registry.promote(registry.register(model, metrics={}, training={"source": "bench"}).version)


class WorkerProcess(BenchChild):
    """``churnstream worker`` as a subprocess, with ``settings`` in its environment."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        health = f"http://127.0.0.1:{settings.worker_web_port}/health"
        super().__init__("worker", log_path, health, stop_seconds=30)
        self.settings = settings
        self.started_at = 0.0
        self.healthy_at = 0.0

    def start(self, timeout: float = 90) -> None:
        self.started_at = time.perf_counter()
        self.launch([*CLI, "worker"], child_env(self.settings), timeout, interval=0.05)
        self.healthy_at = time.perf_counter()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}{path}"

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples, summed over labels other than a histogram's
        ``le``, by sample name (buckets as ``name{le=...}``)."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        totals: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if name.endswith("_bucket"):
                    name = f"{name}{{le={sample.labels['le']}}}"
                totals[name] += sample.value
        return dict(totals)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


# --- Kafka helpers ----------------------------------------------------------------------


def input_partitions(settings: Settings) -> list[PARTITIONS_OF]:
    topics = Topics.from_settings(settings)
    return [
        (topic, partition)
        for topic in (topics.activity, topics.transactions)
        for partition in range(settings.topic_partitions)
    ]


def produce_lines(settings: Settings, lines: Sequence[bytes]) -> float:
    """Send ``lines`` through an EventProducer (creating the topics); return the seconds."""
    producer = EventProducer(settings)
    start = time.perf_counter()
    now = datetime.now(UTC)
    for line in lines:
        producer.send_json(line, None, now)
    producer.close(120)
    stats = producer.stats
    if stats.failed or stats.delivered != len(lines):
        raise RuntimeError(f"producing the input failed: {stats}")
    return time.perf_counter() - start


def read_messages(settings: Settings, ends: dict[PARTITIONS_OF, int]) -> list[RawMessage]:
    """The input topics' messages below ``ends``, in the order a consumer fetches them."""
    total = sum(ends.values())
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    messages: list[RawMessage] = []
    deadline = time.monotonic() + 120
    try:
        while len(messages) < total and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 1.0):
                if m.error() is None and m.offset() < ends[(m.topic(), m.partition())]:
                    messages.append(
                        RawMessage(m.topic(), m.partition(), m.offset(), m.key(), m.value())
                    )
    finally:
        consumer.close()
    if len(messages) != total:
        raise RuntimeError(f"read {len(messages)} of {total} messages back")
    return messages


def delete_topics(bootstrap: Settings, prefixes: Sequence[str], groups: Sequence[str] = ()) -> None:
    """Delete the four topics of each prefix and Faust's internal topics of each group."""
    admin = AdminClient(client_config(bootstrap))
    names = {t for p in prefixes for t in Topics.from_prefix(p).all()}
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [
        n
        for n in existing
        if n in names or any(n.startswith(f"{g}-") and "__assignor" in n for g in groups)
    ]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            with suppress(Exception):
                future.result(timeout=30)


def drop_keys(client: redis.Redis, prefixes: Sequence[str]) -> None:
    for prefix in prefixes:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=2000):
            batch.append(key)
            if len(batch) >= 2000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


# --- input data -------------------------------------------------------------------------


def day_start(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


@dataclass
class Input:
    name: str
    description: str
    events: list[Event]

    @property
    def lines(self) -> list[bytes]:
        return [encode_event(e) for e in self.events]

    def stats(self, batch: int) -> dict[str, Any]:
        ids = [e.customer_id for e in self.events]
        per_batch = [len(set(ids[i : i + batch])) for i in range(0, len(ids), batch)]
        return {
            "description": self.description,
            "events": len(ids),
            "customers": len(set(ids)),
            "events_per_customer": round(len(ids) / max(1, len(set(ids))), 1),
            "distinct_customers_per_batch_in_produce_order": round(_mean(per_batch), 1),
        }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def uniform_input(events: int) -> Input:
    """``events`` simulated events of 20,000 customers: all their events over a few days
    (~170k a day; ending two days ago), thinned at random to ``events`` (order kept), so a
    batch spans many customers."""
    customers = 20_000
    days = max(3, math.ceil(events * 2.5 / 170_000))
    config = SimulationConfig(customers=customers, days=days, seed=11, start=day_start(days + 2))
    stream = list(simulate(config))
    if len(stream) > events:
        keep = np.sort(np.random.default_rng(11).choice(len(stream), events, replace=False))
        stream = [stream[i] for i in keep.tolist()]
    return Input(
        "uniform",
        f"simulator, {customers:,} customers x {days} days (seed 11), {len(stream):,} of "
        "their events drawn at random, time order kept",
        stream,
    )


def skewed_input(events: int) -> Input:
    """The first ``events`` simulated events of 2,000 customers (~100 events each)."""
    customers = 2_000
    days = max(2, math.ceil(events / customers / 6.5) + 1)
    config = SimulationConfig(customers=customers, days=days, seed=12, start=day_start(days + 2))
    stream = [e for _, e in zip(range(events), simulate(config), strict=False)]
    return Input(
        "skewed",
        f"simulator, {customers:,} customers x {days} days (seed 12), first "
        f"{len(stream):,} events in time order",
        stream,
    )


@dataclass
class WorkerRun:
    settings: Settings
    worker: WorkerProcess
    ends: dict[PARTITIONS_OF, int]
    figures: dict[str, Any] = field(default_factory=dict)


def fences_applied(store: FeatureStore, ends: dict[PARTITIONS_OF, int]) -> tuple[int, bool]:
    """(messages applied according to the fences, whether every partition is drained)."""
    fences = store.read_fences(sorted(ends))
    applied = sum(f + 1 for f in fences.values())
    drained = all(fences[tp] >= end - 1 for tp, end in ends.items())
    return applied, drained


def wait_first_batch(
    store: FeatureStore,
    ends: dict[PARTITIONS_OF, int],
    exited: Callable[[], bool],
    log_tail: Callable[[], str],
    timeout: float = 120,
) -> tuple[int, bool]:
    """Wait until a fence moves (the workers applied a first batch); return
    :func:`fences_applied` then. Raises RuntimeError (with ``log_tail()``) when ``exited()``
    or after ``timeout`` seconds. Polls every ``_FENCE_POLL_S``."""
    deadline = time.monotonic() + timeout
    while True:
        applied, drained = fences_applied(store, ends)
        if applied > 0:
            return applied, drained
        if time.monotonic() > deadline or exited():
            raise RuntimeError(f"the worker applied nothing: {log_tail()}")
        time.sleep(_FENCE_POLL_S)


def wait_all_applied(
    store: FeatureStore,
    ends: dict[PARTITIONS_OF, int],
    exited: Callable[[], bool],
    log_tail: Callable[[], str],
    timeout: float,
) -> None:
    """Wait until every partition is drained (see :func:`wait_first_batch` for the rest)."""
    deadline = time.monotonic() + timeout
    while not fences_applied(store, ends)[1]:
        if time.monotonic() > deadline or exited():
            raise RuntimeError(f"the worker did not drain: {log_tail()}")
        time.sleep(_FENCE_POLL_S)
