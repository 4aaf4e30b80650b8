"""End-to-end latency of a caught-up worker: from send() to the event applied and scored
(see :mod:`bench.worker_bench`)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import percentiles_ms
from bench.worker_support import WorkerRun, fences_applied
from core.customer_encoding import decode_score
from core.events import Play, PlayPayload
from core.kafka_client import input_end_offsets
from core.keys import SCORE_FIELD, Keys
from core.producer import EventProducer
from core.redis_client import client_is_cluster, connect_redis
from core.settings import Settings
from core.store import FeatureStore

log = logging.getLogger("bench.worker")

# --- 2. end-to-end latency --------------------------------------------------------------


# The poller's read: every pending sample's score record in one command (on a Redis
# Cluster, a pipeline: the keys span slots). It shares the machine's two cores with the
# worker, Kafka and Redis: a pipeline of one HGET per sample cost redis-py ~5 µs of
# packing and parsing each, ~15 % of a core at 10,000 events/s.
_READ_SCORES = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""


# The sender sleeps only when it is at least this far ahead of the schedule, so at
# 10,000 events/s it wakes up ~1,000 times a second, not 10,000 (each wake-up costs the
# cores it shares with the worker); an event leaves at most this much before its time.
# Latency is measured from the moment each sample is actually sent.
_SEND_TICK_SECONDS = 0.001


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
    keys = Keys.of(settings)
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
        read_scores = client.register_script(_READ_SCORES)
        cluster = client_is_cluster(client)  # the keys of one script call may span slots
        while not stop.is_set():
            with lock:
                items = list(pending.items())
            if items:
                names = [keys.customer(cid) for cid, _ in items]
                if cluster:
                    pipe = client.pipeline(transaction=False)
                    for name in names:
                        pipe.hget(name, SCORE_FIELD)
                    values = pipe.execute()
                else:
                    values = read_scores(keys=names, args=[SCORE_FIELD])
                seen = time.perf_counter()
                with lock:
                    for (cid, (sent, expected)), value in zip(items, values, strict=True):
                        if value and decode_score(cid, value).last_event_time == expected:
                            latencies.append(seen - sent)
                            del pending[cid]
                polls[0] += 1
            stop.wait(poll_interval)

    metrics0 = run.worker.metrics()
    redis_before = _redis_persistence(settings)
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
            if wait > _SEND_TICK_SECONDS:
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
    redis_after = _redis_persistence(settings)
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
    return {
        **percentiles_ms(latencies, digits=1, prefix="e2e_"),
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
        "redis_during_phase": _redis_phase(redis_before, redis_after, total),
        "poll_rounds": polls[0],
        "poll_interval_ms": poll_interval * 1000,
        "sample_every": sample_every,
        "producer_extra_config": {"linger.ms": 5},
    }


def _redis_persistence(settings: Settings) -> dict[str, int]:
    """Redis's AOF rewrites so far and its AOF's growth since the last one (bytes)."""
    info = connect_redis(settings).info("persistence")
    return {
        "aof_rewrites": int(info.get("aof_rewrites", 0)),
        "aof_growth": int(info.get("aof_current_size", 0)) - int(info.get("aof_base_size", 0)),
    }


def _redis_phase(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, Any]:
    """AOF rewrites during a phase (each forks Redis, and the child takes a core for
    seconds: on a small machine it shows in the worker's latency), and the AOF bytes
    written per event sent (known only when no rewrite happened in the phase)."""
    rewrites = after["aof_rewrites"] - before["aof_rewrites"]
    grown = after["aof_growth"] - before["aof_growth"]
    return {
        "aof_rewrites": rewrites,
        "aof_bytes_per_event": round(grown / events) if rewrites == 0 and events else None,
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
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    ends = input_end_offsets(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fences_applied(store, ends)[1]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"worker did not drain within {timeout}s")
