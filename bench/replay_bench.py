"""Replay throughput: ``churnstream replay`` into Kafka, against producing the same file.

The input is the producer benchmark's file of simulated events (JSON lines, in event-time
order). Each round, alternating, on fresh topics of the same broker:

* ``replay_eps`` — ``churnstream replay FILE --quiet --json`` run in-process (the CLI code
  path from argument parsing to the final flush and checkpoint, without Python's start-up
  and with the topics created beforehand): the quick time scan, reading and validating
  every line, the canonical re-encoding, idempotent ``acks=all`` producing keyed by
  customer, and a checkpoint (flush, topic end offsets, fsync'd file) every 2 s.
* ``replay_merge_eps`` — the same events split into 4 files by customer (each still in
  time order), so replay merges 4 streams k-way.
* the baselines: ``churnstream produce``'s code path on the same file (validate,
  re-encode, route, key; no ordering, no checkpoints) and a bare confluent-kafka
  ``produce(topic, line)`` loop (no parsing at all).

Medians of ``rounds`` rounds are reported, with the ratios to the baselines.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bench.common import DATA_DIR, services, write_result
from bench.producer_bench import bare_producer_rate, event_producer_rate, simulated_events_file
from bench.worker_support import delete_topics
from core.kafka_client import ensure_topics
from core.settings import Settings, get_settings

TARGET_EPS = 150_000


def split_by_customer(path: Path, parts: int) -> list[Path]:
    """``path``'s lines dealt into ``parts`` files by a hash of the customer id (cached)."""
    paths = [DATA_DIR / f"{path.stem}.part{i}of{parts}.jsonl" for i in range(parts)]
    if all(p.exists() for p in paths):
        return paths
    outs = [p.open("wb") for p in paths]
    try:
        with path.open("rb") as lines:
            for line in lines:
                customer = json.loads(line)["customer_id"]
                outs[zlib.crc32(customer.encode()) % parts].write(line)
    finally:
        for out in outs:
            out.close()
    return paths


def replay_rate(settings: Settings, files: list[Path]) -> tuple[float, dict[str, Any]]:
    """Run ``churnstream replay`` in-process on fresh topics; (events/s, its JSON summary)."""
    from churnstream.cli import app

    prefix = f"bench-replay-{uuid.uuid4().hex[:8]}."
    isolated = settings.model_copy(update={"topic_prefix": prefix})
    ensure_topics(isolated)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CHURN_TOPIC_PREFIX": prefix,
        "CHURN_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CHURN_LOG_LEVEL": "WARNING",
    }
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            env["CHURN_RUN_DIR"] = run_dir
            get_settings.cache_clear()
            args = ["replay", *map(str, files), "--quiet", "--json"]
            start = time.perf_counter()
            result = CliRunner().invoke(app, args, env=env)
            elapsed = time.perf_counter() - start
            get_settings.cache_clear()
        if result.exit_code != 0:
            raise RuntimeError(f"replay failed ({result.exit_code}): {result.output[-2000:]}")
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        kafka = summary["kafka"]
        if kafka["failed"] or kafka["delivered"] != summary["sent"] or summary["invalid"]:
            raise RuntimeError(f"replay did not deliver everything: {summary}")
        return summary["sent"] / elapsed, summary
    finally:
        delete_topics(settings, [prefix])


def run(events: int = 1_000_000, rounds: int = 3) -> dict[str, Any]:
    path = simulated_events_file(events)
    parts = split_by_customer(path, 4)
    with services() as svc:
        settings = svc.settings
        rates: dict[str, list[float]] = {"replay": [], "merge": [], "produce": [], "raw": []}
        summary: dict[str, Any] = {}
        for _ in range(rounds):
            rate, summary = replay_rate(settings, [path])
            rates["replay"].append(rate)
            rates["merge"].append(replay_rate(settings, parts)[0])
            rates["produce"].append(event_producer_rate(settings, path)[0])
            rates["raw"].append(bare_producer_rate(settings, path)[0])
    median = {name: statistics.median(values) for name, values in rates.items()}
    figures = {
        "replay_eps": round(median["replay"]),
        "replay_merge_eps": round(median["merge"]),
    }
    details = {
        "events": summary["sent"],
        "rounds": rounds,
        **{f"{name}_eps_rounds": [round(r) for r in values] for name, values in rates.items()},
        "baseline_produce_eps": round(median["produce"]),
        "baseline_raw_eps": round(median["raw"]),
        "ratio_to_produce": round(median["replay"] / median["produce"], 3),
        "ratio_to_bare": round(median["replay"] / median["raw"], 3),
        "merge_ratio_to_replay": round(median["merge"] / median["replay"], 3),
        "target_replay_eps": TARGET_EPS,
        "input": path.name,
        "command": "make bench BENCH_ARGS='--only replay"
        + ("'" if events == 1_000_000 else f" --replay-events {events}'"),
    }
    write_result("replay", figures, details)
    return {**figures, **details}
