"""``redis_bytes_per_customer`` alone, the way the worker benchmark measures it (phase 5
of :mod:`bench.worker_bench`: simulated history applied through the BatchProcessor, then
``MEMORY USAGE`` of a sample of customer hashes plus each customer's share of the sorted
sets), on fewer customers and without the rest of the benchmark: a deterministic memory
figure, for iterating on the stored layout.

    KAFKA_BOOTSTRAP_SERVERS=... REDIS_URL=... python -m bench.worker_memory --customers 300

Uses its own topics and key prefix, and deletes both when done.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.worker_baselines import memory_per_customer
from bench.worker_support import champion_model, delete_topics, drop_keys, isolated
from core.kafka_client import ensure_topics
from core.redis_client import connect_redis
from core.settings import get_settings

_SHOWN = (
    "redis_bytes_per_customer",
    "customer_hash_bytes_mean",
    "sorted_sets_bytes_per_customer",
    "events_per_customer_mean",
    "sampled_events_per_customer_mean",
    "hash_fields_per_customer_mean",
    "hash_payload_bytes_mean",
    "longest_value_bytes_p50",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated(get_settings(), "memory", Path(tmp))
        ensure_topics(settings)
        try:
            memory = memory_per_customer(
                settings,
                champion_model(),
                customers=args.customers,
                days=args.days,
                sample=min(args.sample, args.customers),
            )
        finally:
            drop_keys(connect_redis(settings), [settings.redis_key_prefix])
            delete_topics(settings, [settings.topic_prefix])
    shown = {name: memory.get(name) for name in _SHOWN}
    shown["dedup_days"] = settings.dedup_days
    print(json.dumps(shown, indent=2))  # command-line output


if __name__ == "__main__":
    main()
