"""Producer throughput: ``churnstream produce``'s code path against a bare confluent-kafka loop.

Both read the same JSON-lines file of simulated events and produce every line to a fresh
topic on the same broker, with the same client settings (idempotent, acks=all, lz4):

* ``producer_raw_eps`` — a bare ``Producer.produce(topic, line)`` loop: no parsing, no
  validation, no key. The ceiling for a Python producer on this machine.
* ``producer_eps`` — :func:`core.jsonl_producer.produce_lines` with an
  :class:`~core.producer.EventProducer`: each line validated against the contract,
  re-encoded canonically, routed by type and keyed by customer id, delivery reports counted.

Each is run ``rounds`` times, alternating, and the median rate is reported.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from bench.common import DATA_DIR, services, write_result
from core.jsonl_producer import produce_lines
from core.kafka_client import client_config, ensure_topics
from core.producer import PRODUCER_DEFAULTS, EventProducer
from core.settings import Settings
from core.topics import Topics


def simulated_events_file(events: int) -> Path:
    """A cached JSON-lines file with at least ``events`` simulated events (first N used)."""
    from offline.simulator import SimulationConfig, simulate, write_jsonl

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"simulated-{events}.jsonl"
    if path.exists() and sum(1 for _ in path.open("rb")) >= events:
        return path
    config = SimulationConfig(customers=max(200, events // 200), days=30, seed=7)
    tmp = path.with_suffix(".tmp")
    stream = simulate(config)
    write_jsonl((event for _, event in zip(range(events), stream, strict=False)), tmp)
    tmp.rename(path)
    return path


def bare_producer_rate(settings: Settings, path: Path) -> tuple[float, int]:
    prefix = f"bench-raw-{uuid.uuid4().hex[:8]}."
    ensure_topics(settings.model_copy(update={"topic_prefix": prefix}))
    topic = Topics.from_prefix(prefix).activity  # same partition count as the real topics
    failures: list[KafkaError] = []
    producer = Producer(
        {
            **client_config(settings),
            **PRODUCER_DEFAULTS,
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _msg: failures.append(err),
        }
    )
    sent = 0
    start = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            while True:
                try:
                    producer.produce(topic, line[:-1])
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
            if sent % 2000 == 0:
                producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining or failures:
        raise RuntimeError(f"bare producer: {remaining} undelivered, {len(failures)} failed")
    return sent / elapsed, sent


def event_producer_rate(settings: Settings, path: Path) -> tuple[float, int]:
    isolated = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."})
    producer = EventProducer(isolated)  # topic creation happens here, before the clock
    start = time.perf_counter()
    with path.open("rb") as lines:
        report = produce_lines(lines, producer, None)
    producer.close(120)
    elapsed = time.perf_counter() - start
    stats = producer.stats
    if report.invalid_count or stats.failed or stats.delivered != report.sent:
        raise RuntimeError(f"invalid={report.invalid_count} stats={stats}")
    return report.sent / elapsed, report.sent


def run(events: int = 1_000_000, rounds: int = 3) -> dict[str, Any]:
    path = simulated_events_file(events)
    with services() as svc:
        raw_rates, our_rates = [], []
        for _ in range(rounds):
            raw_rate, raw_count = bare_producer_rate(svc.settings, path)
            our_rate, our_count = event_producer_rate(svc.settings, path)
            raw_rates.append(raw_rate)
            our_rates.append(our_rate)
    figures = {
        "producer_eps": round(statistics.median(our_rates)),
        "producer_raw_eps": round(statistics.median(raw_rates)),
    }
    details = {
        "events": our_count,
        "raw_events": raw_count,
        "rounds": rounds,
        "producer_eps_rounds": [round(r) for r in our_rates],
        "producer_raw_eps_rounds": [round(r) for r in raw_rates],
        "ratio_to_bare": round(figures["producer_eps"] / figures["producer_raw_eps"], 3),
        "target_producer_eps": 150_000,
        "input": str(path.name),
        "command": "make bench BENCH_ARGS='--only producer'",
    }
    write_result("producer", figures, details)
    return {**figures, **details}
