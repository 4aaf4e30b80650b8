"""Worker benchmarks: throughput, the naive baseline, the batch logic alone, latency, memory.

Every figure is measured against the real Kafka broker and Redis server of
:func:`bench.common.services`, with fresh topic / key prefixes and consumer groups, which
are deleted again at the end. The phases, in order:

1. ``worker_eps`` — ``churnstream worker`` as a subprocess (the real Faust app; default
   settings except the isolated names, the web port and the model directory), with a
   champion model registered and promoted first, consumes ``events`` simulated events
   produced beforehand. The clock starts when the first applied batch shows up in Redis
   (a partition fence moves; the events that batch already applied are subtracted) and
   stops when every fence has reached the end of its partition. Run on 20,000 simulated
   customers (the headline: median of ``rounds`` workers, each with a fresh consumer
   group and key prefix on the same topics), on 2,000 customers (``worker_eps_skewed``:
   ~100 events per customer, fewer customers per batch) and, when the default engine is
   not Faust's, on the 20,000 again with ``CHURN_WORKER_ENGINE=faust``
   (``worker_eps_faust_engine``).
2. ``e2e_p50_ms`` / ``e2e_p99_ms`` — the same worker, caught up, while events are produced
   at ``e2e_rate`` per second for ``e2e_seconds``: every ``sample_every``-th event goes to
   a customer of its own (warmed up beforehand, so only that event is in flight for them)
   and a thread polls those customers' ``last_event_time`` score field with one pipelined
   ``HGET`` round every ~2 ms; latency is from just before ``producer.send`` to the end
   of the first poll that sees the event applied and scored. Then once more (details
   only) with a worker restarted with ``CHURN_BATCH_WITHIN_MS=short_within_ms``.
3. ``worker_batch_eps`` — :class:`stream.batch.BatchProcessor` alone, fed the same
   messages (read back from Kafka first) in batches of the worker's batch size against
   real Redis (and the real producer for band changes); then a cProfile'd pass.
4. ``worker_naive_eps`` — a per-event loop on the same messages: a plain confluent-kafka
   ``Consumer.poll()`` per message, ``EventValidator.decode``, one ``EVALSHA`` that
   ``HINCRBY``s that customer's day hash and reads its counters back, one scikit-learn
   ``LogisticRegression.predict_proba``. It runs on the first ``naive_events`` messages.
5. ``redis_bytes_per_customer`` — 2,000 customers x 90 days of simulated history applied
   through the BatchProcessor, then ``MEMORY USAGE … SAMPLES 0`` of 200 customer hashes
   plus each customer's share of the two sorted sets.

With ``py_spy`` (a py-spy binary), one more worker run on fresh topics is sampled with
``py-spy record --idle --threads -f raw``; per thread, the busiest lines and the share
of each stage of the batch go into the details.
"""

from __future__ import annotations

import cProfile
import logging
import math
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from bench.common import DATA_DIR, services, write_result
from bench.worker_floor import floor_rate
from core.aggregates import COUNTERS, DAY_SECONDS
from core.events import Event, EventValidator, Play, PlayPayload, encode_event
from core.features import FEATURE_NAMES
from core.kafka_client import client_config, input_end_offsets
from core.keys import Keys
from core.model import LinearModel
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings, env_var_name
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from stream.batch import BatchProcessor, RawMessage

log = logging.getLogger("bench.worker")

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTITIONS_OF = tuple[str, int]

# Settings the worker subprocess gets from the environment (everything else: defaults).
_SETTINGS_PASSED = (
    "kafka_bootstrap_servers", "redis_url", "topic_prefix", "topic_partitions",
    "redis_key_prefix", "run_dir", "consumer_group", "model_dir", "worker_web_port",
    "batch_size", "batch_within_ms",
) + (("worker_engine",) if "worker_engine" in Settings.model_fields else ())  # fmt: skip

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class WorkerProcess:
    """``churnstream worker`` as a subprocess, with ``settings`` in its environment."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.healthy_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        for name in _SETTINGS_PASSED:
            env[env_var_name(name)] = str(getattr(self.settings, name))
        command = [sys.executable, "-c", "from churnstream.cli import main; main()", "worker"]
        self.started_at = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_tail()}")
            if self.healthy():
                self.healthy_at = time.perf_counter()
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker not healthy within {timeout}s: {self.log_tail()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}{path}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

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

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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


# --- 1. worker throughput ---------------------------------------------------------------


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


def worker_throughput(
    base: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    model: LinearModel,
    tag: str,
    rounds: int = 1,
) -> WorkerRun:
    """Produce ``data`` once, then ``rounds`` times start a worker (a fresh consumer group
    and key prefix each time, so it reads everything again) and time it from its first
    applied batch to drained. Returns the last round, still running (``stack`` stops it),
    with the figures of the median round and every round's rate."""
    topics = isolated(base, tag, root)
    stack.callback(delete_topics, base, [topics.topic_prefix])
    produce_s = produce_lines(topics, data.lines)
    ends = input_end_offsets(topics)
    runs: list[WorkerRun] = []
    for _ in range(rounds):
        if runs:
            runs[-1].worker.stop()
        settings = isolated(base, tag, root).model_copy(
            update={"topic_prefix": topics.topic_prefix}
        )
        stack.callback(delete_topics, base, [], [settings.consumer_group])
        stack.callback(drop_keys, connect_redis(base), [settings.redis_key_prefix])
        promote_champion(settings, model)
        runs.append(_timed_worker(settings, root, stack, data, ends))
    median = sorted(runs, key=lambda r: r.figures["eps"])[len(runs) // 2]
    last = runs[-1]
    last.figures = {
        **median.figures,
        "eps_rounds": [r.figures["eps"] for r in runs],
        "produce_seconds": round(produce_s, 2),
    }
    return last


def _timed_worker(
    settings: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    ends: dict[PARTITIONS_OF, int],
) -> WorkerRun:
    total = sum(ends.values())
    store = FeatureStore(connect_redis(settings), Keys(settings.redis_key_prefix))
    rclient = connect_redis(settings)
    worker = WorkerProcess(settings, root / f"worker-{settings.redis_key_prefix}.log")
    stack.callback(worker.stop)
    log.info("worker start input=%s events=%d engine=%s", data.name, total, engine_of(settings))
    worker.start()
    # Wait for the first applied batch (a fence moves), then time until drained.
    deadline = time.monotonic() + 120
    while True:
        applied0, drained = fences_applied(store, ends)
        if applied0 > 0:
            break
        if time.monotonic() > deadline or worker.exited():
            raise RuntimeError(f"worker applied nothing: {worker.log_tail()}")
        time.sleep(_FENCE_POLL_S)
    t0 = time.perf_counter()
    cpu0, redis0, busy0 = worker.cpu_seconds(), redis_cpu_seconds(rclient), machine_busy_seconds()
    deadline = time.monotonic() + 600
    while not drained:
        if time.monotonic() > deadline or worker.exited():
            raise RuntimeError(f"worker did not drain: {worker.log_tail()}")
        time.sleep(_FENCE_POLL_S)
        _, drained = fences_applied(store, ends)
    t1 = time.perf_counter()
    cpu1, redis1, busy1 = worker.cpu_seconds(), redis_cpu_seconds(rclient), machine_busy_seconds()
    elapsed = t1 - t0
    metrics = worker.metrics()
    batches = metrics.get("churn_worker_batch_duration_seconds_count", 0.0)
    in_process = metrics.get("churn_worker_batch_duration_seconds_sum", 0.0)
    scored = metrics.get("churn_worker_scores_total", 0.0)
    figures = {
        "engine": engine_of(settings),
        "eps": round((total - applied0) / elapsed),
        "events": total,
        "timed_events": total - applied0,
        "seconds_first_batch_to_drained": round(elapsed, 3),
        "eps_from_healthy": round(total / (t1 - worker.healthy_at)),
        "seconds_spawn_to_healthy": round(worker.healthy_at - worker.started_at, 2),
        "seconds_healthy_to_first_batch_seen": round(t0 - worker.healthy_at, 2),
        "batches": int(batches),
        "mean_batch_events": round(metrics.get("churn_worker_batch_size_events_sum", 0) / batches)
        if batches
        else None,
        "mean_customers_scored_per_batch": round(scored / batches, 1) if batches else None,
        "band_changes_published": int(metrics.get("churn_worker_band_changes_total", 0)),
        "applied": int(metrics.get("churn_worker_events_applied_total", 0)),
        "share_of_worker_wall_time_in_BatchProcessor_process": round(in_process / elapsed, 3),
        "mean_ms_per_batch_in_process": round(1000 * in_process / batches, 2) if batches else None,
        "ms_in_process_per_customer_scored": round(1000 * in_process / scored, 3)
        if scored
        else None,
        "worker_cpu_cores_used": round((cpu1 - cpu0) / elapsed, 2),
        "redis_cpu_cores_used": round((redis1 - redis0) / elapsed, 2),
        "machine_cpu_cores_busy": round((busy1[0] - busy0[0]) / elapsed, 2),
        "input": data.stats(settings.batch_size),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    log.info("worker done input=%s eps=%s", data.name, figures["eps"])
    return WorkerRun(settings, worker, ends, figures)


# --- 2. end-to-end latency --------------------------------------------------------------


def engine_of(settings: Settings) -> str:
    return str(getattr(settings, "worker_engine", "faust"))


def e2e_latency(
    run: WorkerRun,
    background_customers: Sequence[str],
    rate: int,
    seconds: float,
    sample_every: int,
    poll_interval: float = 0.002,
    warm_customers: Sequence[str] = (),
) -> dict[str, Any]:
    """Latency from send to applied-and-scored (see the module docstring). With
    ``warm_customers``, each of them gets one event in the warm-up too (a restarted
    worker's memory is cold; live traffic would have loaded them long ago)."""
    settings = run.settings
    keys = Keys(settings.redis_key_prefix)
    uid = uuid.uuid4().hex[:6]
    total = int(rate * seconds)
    samples = [f"LAT-{uid}-{i:05d}" for i in range(total // sample_every + 1)]
    producer = EventProducer(settings, create_topics=False, extra_config={"linger.ms": 5})
    # Warm-up: one event a day ago for every sampled customer, so a sampled event lands on
    # an existing customer (in Redis and in the worker's memory), like live traffic does.
    day_ago = datetime.now(UTC) - timedelta(days=1)
    for i, cid in enumerate([*samples, *warm_customers]):
        producer.send(play(f"warm-{uid}-{i}", cid, day_ago - timedelta(seconds=i % 3600)))
    if producer.flush(60):
        raise RuntimeError("warm-up events not delivered")
    wait_drained(settings, timeout=120)

    pending: dict[str, tuple[float, int]] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    polls = [0]

    def poll_loop() -> None:
        client = connect_redis(settings)
        while not stop.is_set():
            with lock:
                items = list(pending.items())
            if items:
                pipe = client.pipeline(transaction=False)
                for cid, _ in items:
                    pipe.hget(keys.customer(cid), "last_event_time")
                values = pipe.execute()
                seen = time.perf_counter()
                with lock:
                    for (cid, (sent, expected)), value in zip(items, values, strict=True):
                        if value is not None and int(value) == expected:
                            latencies.append(seen - sent)
                            del pending[cid]
                polls[0] += 1
            stop.wait(poll_interval)

    metrics0 = run.worker.metrics()
    poller = threading.Thread(target=poll_loop, name="e2e-poller", daemon=True)
    poller.start()
    rng = np.random.default_rng(5)
    background = rng.choice(len(background_customers), total).tolist()
    next_sample = 0
    start = time.perf_counter()
    try:
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            now = datetime.now(UTC)
            if i % sample_every == 0:
                cid = samples[next_sample]
                next_sample += 1
                event = play(f"lat-{uid}-{i}", cid, now)
                expected = int(now.timestamp())
                sent = time.perf_counter()
                producer.send(event)
                with lock:
                    pending[cid] = (sent, expected)
            else:
                customer = background_customers[background[i]]
                producer.send(play(f"bg-{uid}-{i}", customer, now))
        send_seconds = time.perf_counter() - start
        if producer.flush(30):
            raise RuntimeError("latency-phase events not delivered")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if not pending:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        poller.join(timeout=10)
    lost = len(pending)
    metrics1 = run.worker.metrics()
    batches = metrics1["churn_worker_batch_duration_seconds_count"] - metrics0.get(
        "churn_worker_batch_duration_seconds_count", 0
    )
    busy = metrics1["churn_worker_batch_duration_seconds_sum"] - metrics0.get(
        "churn_worker_batch_duration_seconds_sum", 0
    )
    events = metrics1["churn_worker_batch_size_events_sum"] - metrics0.get(
        "churn_worker_batch_size_events_sum", 0
    )
    scored = metrics1.get("churn_worker_scores_total", 0) - metrics0.get(
        "churn_worker_scores_total", 0
    )
    bucket = "churn_worker_batch_duration_seconds_bucket{le="
    histogram = {
        name[len(bucket) : -1]: int(value - metrics0.get(name, 0))
        for name, value in metrics1.items()
        if name.startswith(bucket)
    }
    ms = np.array(latencies) * 1000
    return {
        "e2e_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "e2e_p90_ms": round(float(np.percentile(ms, 90)), 1),
        "e2e_p99_ms": round(float(np.percentile(ms, 99)), 1),
        "e2e_max_ms": round(float(ms.max()), 1),
        "e2e_mean_ms": round(float(ms.mean()), 1),
        "samples": len(latencies),
        "samples_not_seen_within_15s": lost,
        "events_sent": total,
        "target_rate_eps": rate,
        "achieved_send_rate_eps": round(total / send_seconds),
        "worker_during_phase": {
            "batches": int(batches),
            "mean_batch_events": round(events / batches, 1) if batches else None,
            "mean_ms_in_process_per_batch": round(1000 * busy / batches, 1) if batches else None,
            "mean_customers_scored_per_batch": round(scored / batches, 1) if batches else None,
            "ms_in_process_per_customer_scored": round(1000 * busy / scored, 3) if scored else None,
            "batches_per_second": round(batches / send_seconds, 1),
            "batches_taking_at_most_seconds": histogram,
        },
        "poll_rounds": polls[0],
        "poll_interval_ms": poll_interval * 1000,
        "sample_every": sample_every,
        "producer_extra_config": {"linger.ms": 5},
    }


def _median_round(rounds: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose ``key`` is the median (the upper one of an even count)."""
    return sorted(rounds, key=lambda r: r[key])[len(rounds) // 2]


def _latency_round(figures: dict[str, Any]) -> dict[str, Any]:
    keep = ("e2e_p50_ms", "e2e_p99_ms", "e2e_max_ms", "samples", "achieved_send_rate_eps")
    return {k: figures[k] for k in keep}


def play(event_id: str, customer_id: str, at: datetime) -> Play:
    return Play(
        event_id=event_id,
        customer_id=customer_id,
        event_time=at,
        payload=PlayPayload(session_id=f"s-{event_id}", item_id="song-1", duration_s=180.0),
    )


def wait_drained(settings: Settings, timeout: float) -> None:
    store = FeatureStore(connect_redis(settings), Keys(settings.redis_key_prefix))
    ends = input_end_offsets(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fences_applied(store, ends)[1]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"worker did not drain within {timeout}s")


# --- 3. the BatchProcessor alone --------------------------------------------------------


def batch_processor_rate(
    settings: Settings,
    messages: Sequence[RawMessage],
    model: LinearModel,
    batch: int,
    profile: cProfile.Profile | None = None,
) -> tuple[float, int]:
    """Feed ``messages`` to a fresh BatchProcessor (own key prefix); return (eps, scored)."""
    store = FeatureStore(connect_redis(settings), Keys(settings.redis_key_prefix))
    producer = EventProducer(settings, create_topics=False)
    processor = BatchProcessor(settings, store, producer, lambda: model)
    scored = 0
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    for i in range(0, len(messages), batch):
        report = processor.process(messages[i : i + batch])
        scored += report.scored
        if report.dead_letters or report.retries:
            raise RuntimeError(f"unexpected batch report: {report}")
    if profile is not None:
        profile.disable()
    elapsed = time.perf_counter() - start
    producer.close(30)
    return len(messages) / elapsed, scored


_STAGES = (
    ("stream/batch.py", "process", "BatchProcessor.process (all)"),
    ("stream/batch.py", "_current_fences", "read fences"),
    ("stream/batch.py", "_decode", "decode + validate"),
    ("stream/batch.py", "_apply", "apply to aggregates (incl. loading new customers)"),
    ("core/store.py", "load_customers", "load customers from Redis (HGETALL)"),
    ("stream/batch.py", "_score", "score (features + model)"),
    ("core/features.py", "feature_matrix", "feature_matrix"),
    ("stream/batch.py", "_send", "send dead letters and band changes"),
    ("stream/batch.py", "_await_delivery", "wait for Kafka's acknowledgement of them"),
    ("core/store.py", "prepare_commit", "encode the writes (msgpack)"),
    ("core/store.py", "commit_prepared", "commit to Redis (one EVALSHA, fenced)"),
    ("stream/batch.py", "_observe", "metrics"),
)


def profile_summary(profile: cProfile.Profile, top: int = 10) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    Row = tuple[int, int, float, float, Any]  # (primitive calls, calls, self, cum, callers)
    table = cast(dict[tuple[str, int, str], Row], stats.stats)  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]

    def where(key: tuple[str, int, str]) -> str:
        path, line, name = key
        short = path.replace(str(REPO_ROOT) + "/", "")
        short = short.split("site-packages/")[-1]
        return f"{short}:{line}({name})"

    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    top_self = [
        f"{nc:>8} calls  {tt:7.3f}s self ({100 * tt / total:4.1f}%)  {ct:7.3f}s cum  {where(k)}"
        for k, (_, nc, tt, ct, _) in rows
    ]
    stages: dict[str, Any] = {}
    process_cum = None
    for suffix, name, label in _STAGES:
        for (path, _, func), (_, nc, _, ct, _) in table.items():
            if func == name and path.endswith(suffix):
                if name == "process":
                    process_cum = ct
                stages[label] = {"seconds": round(ct, 3), "calls": nc}
    if process_cum:
        for value in stages.values():
            value["share_of_process"] = round(value["seconds"] / process_cum, 3)
    return {"total_seconds": round(total, 3), "top_by_self_time": top_self, "stages": stages}


# --- 4. the naive per-event baseline ----------------------------------------------------

_NAIVE_LUA = """
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HMGET', KEYS[1], {fields})
""".format(fields=", ".join(f"'{name}'" for name in COUNTERS))


def naive_increments(event: Event) -> list[Any]:
    args: list[Any] = [event.type, 1]
    payload = event.payload
    if event.type == "play":
        args += ["play_seconds", int(payload.duration_s)]  # type: ignore[attr-defined]
    elif event.type == "session_end":
        args += ["session_seconds", int(payload.duration_s)]  # type: ignore[attr-defined]
    elif event.type in ("purchase", "refund"):
        cents = round(payload.amount * 100)  # type: ignore[attr-defined]
        items = int(payload.quantity)  # type: ignore[attr-defined]
        if event.type == "purchase":
            args += ["revenue_cents", cents, "items", items]
        else:
            args += ["refund_cents", cents, "refund_items", items]
    return args


def naive_rate(
    settings: Settings, key_prefix: str, limit: int, ends: dict[PARTITIONS_OF, int]
) -> tuple[float, int]:
    """Per event: poll one message, validate, one EVALSHA round trip, one predict_proba.
    Messages at or past ``ends`` (added after the throughput run) are skipped."""
    from sklearn.linear_model import LogisticRegression

    n_features = len(FEATURE_NAMES)
    rng = np.random.default_rng(3)
    clf = LogisticRegression(max_iter=500).fit(
        rng.normal(size=(400, n_features)), rng.integers(0, 2, 400)
    )
    client = connect_redis(settings)
    script = client.register_script(_NAIVE_LUA)
    topics = Topics.from_settings(settings)
    skew = timedelta(seconds=settings.max_future_skew_seconds)
    validators = {
        topics.activity: EventValidator(settings.max_event_bytes, skew, "activity"),
        topics.transactions: EventValidator(settings.max_event_bytes, skew, "transactions"),
    }
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-naive-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.activity, topics.transactions])
    done = 0
    start = None
    deadline = time.monotonic() + 300
    now = datetime.now(UTC)
    try:
        while done < limit and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if msg.offset() >= ends[(msg.topic(), msg.partition())]:
                continue
            if start is None:
                start = time.perf_counter()  # group join and first fetch excluded
            event = validators[msg.topic()].decode(msg.value(), now)
            day = int(event.event_time.timestamp()) // DAY_SECONDS
            values = script(
                keys=[f"{key_prefix}:n:{{{event.customer_id}}}:{day}"],
                args=naive_increments(event),
            )
            row = np.zeros((1, n_features))
            row[0, : len(values)] = [int(v or 0) for v in values]
            clf.predict_proba(row)
            done += 1
    finally:
        consumer.close()
    if start is None or done < limit:
        raise RuntimeError(f"naive consumer processed only {done} of {limit}")
    return done / (time.perf_counter() - start), done


# --- 5. memory per customer -------------------------------------------------------------


def memory_per_customer(
    base_settings: Settings,
    model: LinearModel,
    customers: int = 2_000,
    days: int = 90,
    sample: int = 200,
    batch: int = 10_000,
) -> dict[str, Any]:
    """Apply ``days`` of history of ``customers`` through the BatchProcessor, then measure."""
    settings = base_settings
    topics = Topics.from_settings(settings)
    config = SimulationConfig(customers=customers, days=days, seed=13, start=day_start(days + 1))
    offsets: dict[PARTITIONS_OF, int] = defaultdict(int)
    events_of: Counter[str] = Counter()
    messages: list[RawMessage] = []
    for event in simulate(config):
        topic = topics.for_kind(event.topic_kind)
        key = event.customer_id.encode()
        partition = zlib.crc32(key) % settings.topic_partitions
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] = offset + 1
        messages.append(RawMessage(topic, partition, offset, key, encode_event(event)))
        events_of[event.customer_id] += 1
    start = time.perf_counter()
    rate, _ = batch_processor_rate(settings, messages, model, batch)
    build_seconds = time.perf_counter() - start
    client = connect_redis(settings)
    keys = Keys(settings.redis_key_prefix)
    ids = sorted(events_of)
    chosen = [ids[i] for i in np.random.default_rng(2).choice(len(ids), sample, replace=False)]
    pipe = client.pipeline(transaction=False)
    for cid in chosen:
        pipe.memory_usage(keys.customer(cid), samples=0)
        pipe.object("encoding", keys.customer(cid))
        pipe.hgetall(keys.customer(cid))
    answers = pipe.execute()
    sizes = answers[0::3]
    encodings = Counter(e.decode() if isinstance(e, bytes) else str(e) for e in answers[1::3])
    contents = cast(list[dict[bytes, bytes]], answers[2::3])
    fields = [len(c) for c in contents]
    payload = [sum(len(k) + len(v) for k, v in c.items()) for c in contents]
    longest = [max(len(v) for v in c.values()) for c in contents]
    zsets = {}
    for name in (keys.risk, keys.scored_at):
        zsets[name] = {
            "bytes": int(client.memory_usage(name, samples=0) or 0),
            "members": int(client.zcard(name)),
            "encoding": client.object("encoding", name),
        }
    zset_share = sum(z["bytes"] / max(1, z["members"]) for z in zsets.values())
    hash_mean = float(np.mean(sizes))
    sampled_events = sum(events_of[c] for c in chosen)
    per_customer = hash_mean + zset_share
    return {
        "redis_bytes_per_customer": round(per_customer),
        "customer_hash_bytes_mean": round(hash_mean),
        "customer_hash_bytes_p50": round(float(np.percentile(sizes, 50))),
        "customer_hash_bytes_p90": round(float(np.percentile(sizes, 90))),
        "sorted_sets_bytes_per_customer": round(zset_share, 1),
        "sorted_sets": {
            name.rsplit(":", 1)[1]: {**z, "encoding": _text(z["encoding"])}
            for name, z in zsets.items()
        },
        "customers": len(ids),
        "sampled_customers": sample,
        "days": days,
        "events": len(messages),
        "events_per_customer_mean": round(len(messages) / len(ids), 1),
        "sampled_events_per_customer_mean": round(sampled_events / sample, 1),
        "bytes_per_event": round(
            float(np.sum(sizes)) / sampled_events + zset_share / (sampled_events / sample), 1
        ),
        "hash_fields_per_customer_mean": round(float(np.mean(fields)), 1),
        "hash_payload_bytes_mean": round(float(np.mean(payload))),
        "hash_payload_note": "sum of field-name and value lengths: what the hash holds "
        "before Redis's per-field overhead",
        "longest_value_bytes_p50": round(float(np.percentile(longest, 50))),
        "longest_value_bytes_max": int(max(longest)),
        "hash_encodings": dict(encodings),
        "build": {
            "through": f"BatchProcessor.process, batches of {batch:,}",
            "seconds": round(build_seconds, 1),
            "eps": round(rate),
        },
        "simulation": f"{customers:,} customers x {days} days, seed 13",
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- py-spy -----------------------------------------------------------------------------


_WATCHED_FRAMES = (
    "BatchProcessor.process (stream/batch.py)",
    "BatchProcessor._current_fences (stream/batch.py)",
    "BatchProcessor._decode (stream/batch.py)",
    "BatchProcessor._apply (stream/batch.py)",
    "FeatureStore.load_customers (core/store.py)",
    "BatchProcessor._score (stream/batch.py)",
    "BatchProcessor._send (stream/batch.py)",
    "BatchProcessor._await_delivery (stream/batch.py)",
    "FeatureStore.prepare_commit (core/store.py)",
    "FeatureStore.commit_prepared (core/store.py)",
    "BatchProcessor._observe (stream/batch.py)",
    "BatchConsumer._valid (stream/batch_consumer.py)",
    "BatchConsumer._commit (stream/batch_consumer.py)",
)


def py_spy_summary(raw: Path, top: int = 12) -> dict[str, Any]:
    """Per thread: sample share, busiest leaf lines, and the inclusive share of the
    worker's stages, from ``py-spy record --threads --idle -f raw`` output."""
    threads: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {"self": Counter(), "inclusive": Counter()}
    )
    sizes: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1] if head.startswith("thread") else "?"
        if not frames:
            continue
        sizes[thread] += count
        threads[thread]["self"][_frame_name(frames[-1], keep_line=True)] += count
        for name in {_frame_name(f) for f in frames}:
            threads[thread]["inclusive"][name] += count
    total = sum(sizes.values())
    if not total:
        return {"samples": 0}
    summary: dict[str, Any] = {"samples": total, "threads": {}}
    for thread, n in sizes.most_common():
        if n < total * 0.01:
            continue
        counters = threads[thread]
        summary["threads"][thread] = {
            "share_of_samples": round(n / total, 3),
            "top_self": [
                f"{100 * c / n:5.1f}%  {name}" for name, c in counters["self"].most_common(top)
            ],
            "stages_inclusive": {
                name: round(counters["inclusive"][name] / n, 3)
                for name in _WATCHED_FRAMES
                if counters["inclusive"][name]
            },
        }
    return summary


def _frame_name(frame: str, keep_line: bool = False) -> str:
    """``func (path/to/file.py:123)`` -> ``func (short/file.py)`` (or ``…file.py:123``)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":") if ":" in where else (where, "", "")
    path = path.replace(str(REPO_ROOT) + "/", "").split("site-packages/")[-1]
    if keep_line and line:
        path = f"{path}:{line}"
    return f"{name} ({path})" if path else name


def profiled_worker_run(
    base: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    model: LinearModel,
    py_spy: str,
    seconds: int = 8,
) -> dict[str, Any]:
    settings = isolated(base, "wspy", root)
    stack.callback(delete_topics, base, [settings.topic_prefix], [settings.consumer_group])
    stack.callback(drop_keys, connect_redis(base), [settings.redis_key_prefix])
    promote_champion(settings, model)
    produce_lines(settings, data.lines)
    ends = input_end_offsets(settings)
    store = FeatureStore(connect_redis(settings), Keys(settings.redis_key_prefix))
    worker = WorkerProcess(settings, root / "worker-py-spy.log")
    stack.callback(worker.stop)
    worker.start()
    while fences_applied(store, ends)[0] == 0:
        time.sleep(_FENCE_POLL_S)
    raw = root / "py-spy.raw"
    command = [py_spy, "record", "-p", str(worker.pid), "-d", str(seconds), "--idle",
               "--threads", "-f", "raw", "-o", str(raw)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
    _, drained = fences_applied(store, ends)
    summary = py_spy_summary(raw)
    summary["command"] = " ".join(["py-spy", *command[1:3], "<worker pid>", *command[4:-1], "FILE"])
    summary["drained_during_sampling"] = drained
    summary["note"] = (
        "a separate worker run on the same input (sampling slows the worker, so it is "
        "not the timed run); --idle keeps the samples where the event loop waits"
    )
    worker.stop()
    return summary


# --- the benchmark ----------------------------------------------------------------------


def run(
    events: int = 200_000,
    naive_events: int = 20_000,
    faust_events: int = 60_000,
    rounds: int = 3,
    short_within_ms: int = 20,
    short_e2e_seconds: float = 15.0,
    e2e_rate: int = 2_000,
    e2e_rate_high: int = 10_000,
    e2e_seconds: float = 60.0,
    e2e_rounds: int = 3,
    sample_every: int = 20,
    py_spy: str | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    model = champion_model()
    uniform = uniform_input(events)
    skewed = skewed_input(events)
    details: dict[str, Any] = {}
    with services() as svc, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        base = svc.settings
        root = Path(tmp)
        batch = base.batch_size

        # 1 + 2: the worker on the uniform input, then latency with it caught up.
        main = worker_throughput(base, root, stack, uniform, model, "wuni", rounds=rounds)
        customers = sorted({e.customer_id for e in uniform.events})
        # The floor: a bare consume + decode loop on the same topics (median of rounds).
        floor_rounds = [
            round(floor_rate(main.settings, main.ends, batch)) for _ in range(max(rounds, 1))
        ]
        latency_rounds: dict[int, list[dict[str, Any]]] = {e2e_rate: [], e2e_rate_high: []}
        for rate in (e2e_rate, e2e_rate_high):
            for round_ in range(e2e_rounds):
                log.info("e2e latency rate=%d seconds=%.0f round=%d", rate, e2e_seconds, round_)
                latency_rounds[rate].append(
                    e2e_latency(main, customers, rate, e2e_seconds, sample_every)
                )
        latency = _median_round(latency_rounds[e2e_rate], "e2e_p99_ms")
        latency_high = _median_round(latency_rounds[e2e_rate_high], "e2e_p99_ms")
        main.worker.stop()
        # 2b: the same with a worker (restarted on the same topics and keys, its memory
        # warmed up again) that waits at most ``short_within_ms`` to fill a batch.
        short = main.settings.model_copy(update={"batch_within_ms": short_within_ms})
        short_worker = WorkerProcess(short, root / "worker-short-within.log")
        stack.callback(short_worker.stop)
        short_worker.start()
        log.info("e2e latency batch_within_ms=%d", short_within_ms)
        latency_short = e2e_latency(
            WorkerRun(short, short_worker, main.ends),
            customers,
            e2e_rate,
            short_e2e_seconds,
            sample_every,
            warm_customers=customers,
        )
        short_worker.stop()
        # 1b: the skewed input.
        skew = worker_throughput(base, root, stack, skewed, model, "wskw", rounds=rounds)
        skew.worker.stop()
        # 1c: the Faust agent engine on the start of the uniform input (it is much slower,
        # so fewer events keep the run short), when the default engine is another one.
        faust_run = None
        if engine_of(base) != "faust":
            faust_settings = base.model_copy(update={"worker_engine": "faust"})
            head = min(events, faust_events)
            faust_input = Input(
                "uniform",
                f"the first {head:,} events of the uniform input",
                uniform.events[:head],
            )
            faust_run = worker_throughput(faust_settings, root, stack, faust_input, model, "wfst")
            faust_run.worker.stop()

        # 3: the BatchProcessor alone on the uniform run's messages (the topics now also
        # hold the latency phase's events: only offsets below the first run's ends count).
        messages = read_messages(main.settings, main.ends)
        bp_settings = isolated(base, "bp", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [bp_settings.redis_key_prefix])
        log.info("batch processor alone messages=%d", len(messages))
        bp_eps, bp_scored = batch_processor_rate(bp_settings, messages, model, batch)
        profiled = isolated(base, "bpprof", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [profiled.redis_key_prefix])
        profile = cProfile.Profile()
        profile_events = min(len(messages), 60_000)
        prof_eps, _ = batch_processor_rate(
            profiled, messages[:profile_events], model, batch, profile
        )

        # 4: the naive loop, same messages (the first naive_events the consumer gets).
        naive_rounds: list[float] = []
        for _ in range(max(rounds, 1)):
            naive_prefix = f"bench-naive-{uuid.uuid4().hex[:8]}"
            stack.callback(drop_keys, connect_redis(base), [naive_prefix])
            log.info("naive loop events=%d", naive_events)
            eps, naive_done = naive_rate(main.settings, naive_prefix, naive_events, main.ends)
            naive_rounds.append(eps)
        naive_eps = float(np.median(naive_rounds))

        # 5: memory.
        mem_settings = isolated(base, "mem", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [mem_settings.redis_key_prefix])
        log.info("memory build")
        memory = memory_per_customer(mem_settings, model)

        spy = None
        if py_spy:
            log.info("py-spy run")
            spy = profiled_worker_run(base, root, stack, uniform, model, py_spy)

        redis_version = connect_redis(base).info("server").get("redis_version")

    worker_eps = main.figures["eps"]
    figures = {
        "worker_eps": worker_eps,
        "worker_eps_skewed": skew.figures["eps"],
        **({"worker_eps_faust_engine": faust_run.figures["eps"]} if faust_run else {}),
        "worker_naive_eps": round(naive_eps),
        "worker_speedup_vs_naive": round(worker_eps / naive_eps, 1),
        "worker_batch_eps": round(bp_eps),
        "e2e_p50_ms": latency["e2e_p50_ms"],
        "e2e_p99_ms": latency["e2e_p99_ms"],
        "e2e_p99_ms_at_10k": latency_high["e2e_p99_ms"],
        "worker_floor_eps": int(np.median(floor_rounds)),
        "redis_bytes_per_customer": memory["redis_bytes_per_customer"],
    }
    details = {
        "command": "make bench BENCH_ARGS='--only worker'",
        "exact_command": (
            ".venv/bin/python -m bench.run --only worker "
            f"--worker-events {events}" + (f" --worker-py-spy {py_spy}" if py_spy else "")
        ),
        "targets": {
            "worker_eps": ">= 50000",
            "worker_speedup_vs_naive": ">= 35",
            "worker_eps_skewed": ">= 80000",
            "e2e_p99_ms": "<= 100 (at 2,000 events/s)",
            "e2e_p99_ms_at_10k": "<= 250 (at 10,000 events/s)",
            "redis_bytes_per_customer": "<= 3000",
        },
        "floor": {
            "eps_rounds": floor_rounds,
            "method": "a bare confluent-kafka consume(batch_size) loop with a fresh consumer "
            "group over the uniform run's topics, each message decoded by msgspec into the "
            "typed event (bench.worker_floor); timed from the first message to the last; "
            "median of the rounds",
        },
        "worker_share_of_floor": round(worker_eps / max(np.median(floor_rounds), 1), 3),
        "services": {
            "kafka": base.kafka_bootstrap_servers,
            "redis": base.redis_url,
            "redis_version": redis_version,
            "partitions_per_input_topic": base.topic_partitions,
        },
        "worker_settings": {
            "engine": engine_of(base),
            "batch_size": base.batch_size,
            "batch_within_ms": base.batch_within_ms,
            "note": "defaults; only topic/key prefixes, consumer group, web port, model and "
            "run dirs are isolated",
        },
        "model": {"version": model.version, "features": len(model.feature_names)},
        "worker": {
            "timing": "from the first applied batch seen in Redis (a fence moved; the "
            "events it applied are not counted) to every fence at its partition's end; "
            "eps_from_healthy counts all events from the moment /health answered. The "
            f"uniform input is timed {rounds} times (a fresh consumer group and key prefix "
            "each, same topics) and the median round reported; the others once. Fences are "
            f"polled every {_FENCE_POLL_S * 1000:g} ms.",
            "uniform": main.figures,
            "skewed": skew.figures,
            "uniform_faust_engine": faust_run.figures if faust_run else None,
        },
        "e2e_at_10k": {
            **latency_high,
            "rounds": [_latency_round(r) for r in latency_rounds[e2e_rate_high]],
            "method": "as e2e, at the higher rate; the median round by p99",
        },
        "e2e": {
            **latency,
            "rounds": [_latency_round(r) for r in latency_rounds[e2e_rate]],
            "method": "a worker caught up on the uniform run; Play events at the target rate "
            "(paced send by send) to random customers of that run; every sample_every-th "
            "event goes to a dedicated, warmed-up customer; a thread polls those customers' "
            "'last_event_time' score field (pipelined HGET, one round every ~2 ms); latency "
            "= first poll that sees the event's time minus the moment before send(). "
            "Resolution: the poll interval plus one round trip (~2-3 ms, overstating).",
        },
        "e2e_short_batch_within": {
            **latency_short,
            "batch_within_ms": short_within_ms,
            "method": "as e2e, for a worker restarted with CHURN_BATCH_WITHIN_MS="
            f"{short_within_ms} (everything else default) after one warm-up event for each "
            "customer of the uniform run; not a headline figure, it shows the setting's effect",
        },
        "batch_processor": {
            "eps": round(bp_eps),
            "events": len(messages),
            "batch_size": batch,
            "customers_scored": bp_scored,
            "input": "the uniform run's messages read back from Kafka in fetch order, fed "
            "to BatchProcessor.process with a fresh Redis key prefix (real Redis; band "
            "changes really published to Kafka)",
            "profile": {
                "events": profile_events,
                "eps_under_cprofile": round(prof_eps),
                **profile_summary(profile),
            },
        },
        "naive": {
            "eps": round(naive_eps),
            "eps_rounds": [round(e) for e in naive_rounds],
            "events": naive_done,
            "subset": f"the first {naive_done:,} messages a fresh consumer group polls from "
            f"the uniform run's topics (of {main.figures['events']:,})",
            "per_event": "Consumer.poll() -> EventValidator.decode -> one EVALSHA (HINCRBY "
            "the event's counters in the customer's day hash + HMGET that day's 21 counters) "
            "-> LogisticRegression.predict_proba on one row of "
            f"{len(FEATURE_NAMES)} features",
            "note": "generous to the naive loop: it reads back one day's counters, not the "
            "7/30/90-day windows the features need; timed from its first message",
        },
        "memory": memory,
        "py_spy_worker": spy,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_result("worker", figures, details)
    return {**figures, **details}
