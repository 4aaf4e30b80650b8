"""``make faults`` / ``python -m bench.faults``: run the fault-injection suite.

Usage: ``python -m bench.faults [--size full|reduced] [--events N] [--kills K]
[--malformed M] [--seed S] [--engine batch|faust] [--keep]``. Exits 0 when every check
holds, 1 otherwise (see :mod:`bench.faults.suite`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys

from bench.faults.suite import SIZES, run, write
from core.logging import configure_logging
from core.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description="Crash the worker, restart Redis and Kafka and mix in malformed events "
        "during a replay; then check that nothing was lost, double counted or let through.",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: 1,000,000 events, 5 kills, 50,000 malformed; "
                        "reduced: 100,000, 2, 5,000")  # fmt: skip
    parser.add_argument("--events", type=int, help="valid simulated events to send")
    parser.add_argument("--kills", type=int, help="worker SIGKILLs")
    parser.add_argument("--malformed", type=int, help="malformed messages (ten kinds)")
    parser.add_argument("--seed", type=int, help="seed of the simulation and the fault times")
    parser.add_argument("--engine", choices=["batch", "faust"], help="worker ingestion engine")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    plan = SIZES[args.size]
    changes = {
        name: getattr(args, name)
        for name in ("events", "kills", "malformed", "seed", "engine")
        if getattr(args, name) is not None
    }
    if changes:
        if {"events", "kills", "malformed"} & set(changes):
            changes["size"] = "custom"
        plan = dataclasses.replace(plan, **changes)
    configure_logging(get_settings())
    result = run(plan, keep=args.keep)
    command = "python -m bench.faults " + shlex.join(argv if argv is not None else sys.argv[1:])
    path = write(plan, result, command.strip())
    summary = {
        "passed": result["passed"],
        "checks": result["checks"],
        "faults": result["faults"],
        "unplanned_worker_exits": len(result["unplanned_worker_exits"]),
        "timings": result["timings"],
        "dead_letters": {k: v for k, v in result["dead_letters"].items()},
        "api_availability": result["api"],
        "verify": {k: v for k, v in result["verify"].items() if k != "report"},
        "result_file": str(path),
    }
    print(json.dumps(summary, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
