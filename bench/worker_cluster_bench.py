"""Worker throughput on a Redis Cluster of three masters: ``worker_eps_cluster_1``, ``_2``
and ``_4`` (that many ``churnstream worker`` processes in one consumer group).

For each worker count: fresh topics (``CHURN_TOPIC_PARTITIONS`` partitions, 8 by default,
so four workers get two of each input topic), consumer group and key prefix; the workers
start, and once Kafka has given every one of them its partitions (a stable group), the
input is produced (so no worker starts before the others) by a plain confluent-kafka
producer, keyed by customer (librdkafka's default partitioner), already encoded: several
times faster than the workers. The clock runs from the first applied batch (a fence moves;
what it already applied is subtracted) until every fence has reached the end of its
partition; the details say how long producing took (it overlaps the start of the run). The figures
are events per second for the whole group, with the CPU cores the workers and the three
Redis masters used meanwhile.

The cluster is ``REDIS_CLUSTER_URL`` when set, else three local masters started for the
phase (:func:`bench.api_at_risk.cluster_url`).
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path
from statistics import median
from typing import Any

from confluent_kafka import ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from bench.api_at_risk import cluster_url
from bench.cpu import free_port, machine_busy_seconds
from bench.worker_support import (
    Input,
    WorkerProcess,
    delete_topics,
    drop_keys,
    isolated,
    promote_champion,
    wait_all_applied,
    wait_first_batch,
)
from core.kafka_client import client_config, ensure_topics, input_end_offsets
from core.keys import Keys
from core.model import LinearModel
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics

log = logging.getLogger("bench.worker")

WORKER_COUNTS = (1, 2, 4)


def _redis_cpu_seconds(settings: Settings) -> float:
    """CPU seconds used so far by every master of the cluster (``INFO cpu`` of each)."""
    client = connect_redis(settings)
    try:
        infos = client.info("cpu", target_nodes="primaries")  # type: ignore[call-arg]
    finally:
        client.close()
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos.values())


def produce_fast(settings: Settings, data: Input) -> float:
    """Send ``data``'s events, encoded, keyed by customer id; return the seconds taken."""
    topics = Topics.from_settings(settings)
    routed = [
        (topics.for_kind(event.topic_kind), event.customer_id.encode(), line)
        for event, line in zip(data.events, data.lines, strict=True)
    ]
    producer = Producer({**client_config(settings), "linger.ms": 20, "acks": "all"})
    start = time.perf_counter()
    for topic, key, value in routed:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError("producing the cluster benchmark's input did not finish")
    return time.perf_counter() - start


def stable_members(settings: Settings) -> int:
    """Members of the workers' consumer group once it is stable and each has input
    partitions (0 otherwise)."""
    admin = AdminClient(client_config(settings))
    group = settings.consumer_group
    found = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    if found.state != ConsumerGroupState.STABLE:
        return 0
    topics = Topics.from_settings(settings)
    inputs = {topics.activity, topics.transactions}
    members = [
        m for m in found.members
        if any(tp.topic in inputs for tp in m.assignment.topic_partitions)
    ]  # fmt: skip
    return len(members) if len(members) == len(found.members) else 0


def group_throughput(settings: Settings, root: Path, workers: int, data: Input) -> dict[str, Any]:
    """``workers`` workers with ``settings`` (one group, fresh topics), timed to drained."""
    ensure_topics(settings)
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    with ExitStack() as stack:
        processes = []
        for i in range(workers):
            process = WorkerProcess(
                settings.model_copy(update={"worker_web_port": free_port()}),
                root / f"worker-cluster-{workers}-{i}.log",
            )
            stack.callback(process.stop)
            process.start()
            processes.append(process)
        deadline = time.monotonic() + 120
        while stable_members(settings) != workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the group did not settle on {workers} workers")
            time.sleep(0.5)
        produce_seconds = produce_fast(settings, data)
        ends = input_end_offsets(settings)
        total_events = sum(ends.values())

        def exited() -> bool:
            return any(p.exited() for p in processes)

        applied0, _ = wait_first_batch(store, ends, exited, processes[0].log_tail)
        t0 = time.perf_counter()
        cpu0 = sum(p.cpu_seconds() for p in processes)
        redis0, busy0 = _redis_cpu_seconds(settings), machine_busy_seconds()
        wait_all_applied(store, ends, exited, processes[0].log_tail, timeout=900)
        elapsed = time.perf_counter() - t0
        cpu1 = sum(p.cpu_seconds() for p in processes)
        redis1, busy1 = _redis_cpu_seconds(settings), machine_busy_seconds()
    return {
        "workers": workers,
        "eps": round((total_events - applied0) / elapsed),
        "timed_events": total_events - applied0,
        "produce_seconds": round(produce_seconds, 2),
        "seconds_first_batch_to_drained": round(elapsed, 3),
        "workers_cpu_cores_used": round((cpu1 - cpu0) / elapsed, 2),
        "redis_cluster_cpu_cores_used": round((redis1 - redis0) / elapsed, 2),
        "machine_cpu_cores_busy": round((busy1[0] - busy0[0]) / elapsed, 2),
    }


def run_cluster(
    base: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    model: LinearModel,
    rounds: int = 3,
) -> tuple[dict[str, int], dict[str, Any]]:
    """(figures ``worker_eps_cluster_<n>``, details) for each of :data:`WORKER_COUNTS`:
    the median of ``rounds`` runs, each with fresh topics, group and keys; every run is
    kept in the details."""
    figures: dict[str, int] = {}
    details: dict[str, Any] = {}
    with cluster_url() as url:
        on_cluster = base.model_copy(update={"redis_url": url})
        details["redis_url"] = url
        details["partitions"] = on_cluster.topic_partitions
        details["events"] = len(data.lines)
        details["method"] = f"median of {rounds} rounds per worker count"
        for workers in WORKER_COUNTS:
            runs: list[dict[str, Any]] = []
            for round_ in range(max(rounds, 1)):
                settings = isolated(on_cluster, f"wclu{workers}r{round_}", root)
                stack.callback(delete_topics, base, [settings.topic_prefix])
                try:
                    promote_champion(settings, model)
                    log.info(
                        "cluster workers=%d round=%d events=%d", workers, round_, len(data.lines)
                    )
                    runs.append(group_throughput(settings, root, workers, data))
                finally:
                    delete_topics(base, [], [settings.consumer_group])
                    drop_keys(connect_redis(settings), [settings.redis_key_prefix])
                log.info("cluster workers=%d round=%d eps=%d", workers, round_, runs[-1]["eps"])
            figures[f"worker_eps_cluster_{workers}"] = int(median(r["eps"] for r in runs))
            details[f"workers_{workers}"] = {"eps_rounds": [r["eps"] for r in runs], "rounds": runs}
    return figures, details
