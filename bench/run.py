"""``make bench``: run the benchmarks and write bench/results/*.json and summary.json.

Usage: ``python -m bench.run [--only NAME ...] [--events N] [--worker-events N]
[--worker-rounds N] [--worker-e2e-seconds S] [--worker-py-spy PATH]
[--api-customers N] [--replay-events N] [--drift-customers N]``.
Kafka and Redis are the ones named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set,
else the local stack (started for the run and stopped after, unless it was already running).
"""

from __future__ import annotations

import argparse
import json
import logging

from bench import (
    api_bench,
    backfill_bench,
    drift_bench,
    producer_bench,
    replay_bench,
    train_bench,
    worker_bench,
)
from core.logging import configure_logging
from core.settings import get_settings

BENCHMARKS = {
    "producer": lambda args: producer_bench.run(events=args.events),
    "worker": lambda args: worker_bench.run(
        events=args.worker_events,
        py_spy=args.worker_py_spy,
        rounds=args.worker_rounds,
        e2e_seconds=args.worker_e2e_seconds,
        e2e_rounds=args.worker_rounds,
    ),
    "api": lambda args: api_bench.run(customers=args.api_customers),
    "replay": lambda args: replay_bench.run(events=args.replay_events),
    "train": lambda args: train_bench.run(),
    "drift": lambda args: drift_bench.run(customers=args.drift_customers),
    "backfill": lambda args: backfill_bench.run(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="benchmarks to run")
    parser.add_argument("--events", type=int, default=1_000_000, help="events per producer run")
    parser.add_argument(
        "--worker-events", type=int, default=200_000, help="events the worker benchmark consumes"
    )
    parser.add_argument(
        "--worker-rounds",
        type=int,
        default=3,
        help="rounds of each worker figure (the median is reported; every round is kept)",
    )
    parser.add_argument(
        "--worker-e2e-seconds",
        type=float,
        default=60.0,
        help="length of each worker latency run, in seconds",
    )
    parser.add_argument(
        "--replay-events", type=int, default=1_000_000, help="events per replay run"
    )
    parser.add_argument(
        "--worker-py-spy",
        metavar="PATH",
        help="a py-spy binary: also sample one worker run with it (off by default)",
    )
    parser.add_argument(
        "--api-customers",
        type=int,
        default=1_000_000,
        help="customers loaded into Redis for the API benchmark",
    )
    parser.add_argument(
        "--drift-customers",
        type=int,
        default=100_000,
        help="customers loaded into Redis for the drift benchmark",
    )
    args = parser.parse_args()
    configure_logging(get_settings())
    for name in args.only or sorted(BENCHMARKS):
        logging.getLogger("bench").info("benchmark start name=%s", name)
        result = BENCHMARKS[name](args)
        print(json.dumps({name: result}, indent=2))


if __name__ == "__main__":
    main()
