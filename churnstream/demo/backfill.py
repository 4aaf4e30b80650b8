"""Backfilling a fresh system from the UCI Online Retail file, with the real commands.

:func:`backfill_online_retail` runs, as child processes with the same settings (so every
step is what a user would type, and is printed as such)::

    churnstream import online-retail FILE --out <run>/online-retail/events.jsonl --json
    churnstream train --data online-retail FILE      # registers and promotes (gate)
    churnstream worker                               # child process, kept running
    churnstream replay <run>/online-retail/events.jsonl

then waits until the worker has applied every replayed event (its offset fences reach the
topics' end offsets) and returns the timings. ``churnstream demo --data online-retail``
serves the result with the API and dashboard; ``make bench`` times it.

The data ends on 2011-12-09, so this system scores **as of the day after the data ends**
(``CHURN_AS_OF``) — at today's date every customer would look long gone. It keeps its own
topic and key prefixes (``retail``), registry and archive under the run directory, and
400 days of history per customer (the trainer's features look back a year).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from churnstream.demo.errors import DemoError
from churnstream.demo.worker_child import WorkerChild, start_worker
from churnstream.infra.processes import churnstream_argv
from core.kafka_client import ensure_topics, input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings
from core.settings_env import settings_environment
from core.store import FeatureStore

PREFIX = "retail"
RETENTION_DAYS = 400
CATCH_UP_SECONDS = 900.0


def retail_settings(settings: Settings, prefix: str = PREFIX) -> Settings:
    """``settings`` with this system's own prefixes (``prefix``), directories and retention."""
    base = Path(settings.run_dir) / "online-retail"
    return settings.model_copy(
        update={
            "topic_prefix": f"{prefix}.",
            "redis_key_prefix": prefix,
            "consumer_group": f"{prefix}-worker",
            "model_dir": base / "models",
            "archive_dir": base / "archive",
            "retention_days": RETENTION_DAYS,
        }
    )


@dataclass
class Backfill:
    """What the backfill did: timings in seconds, the import report, the model."""

    events_file: Path
    report: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    events_applied: int = 0
    worker: WorkerChild | None = None


def run_command(
    console: Console, settings: Settings, args: list[str], capture: bool = False
) -> str:
    """``churnstream ARGS`` with ``settings`` in its environment; its output shown (or
    captured and returned). Raises :class:`DemoError` when it fails."""
    console.print(f"[bold]$ churnstream {shlex.join(args)}[/]", highlight=False)
    result = subprocess.run(
        churnstream_argv(*args),
        env=settings_environment(settings),
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"`churnstream {shlex.join(args)}` failed (exit {result.returncode})")
    return result.stdout or ""


def backfill_online_retail(
    console: Console, settings: Settings, data_file: Path, keep_worker: bool = True
) -> Backfill:
    """Import, train, start a worker, replay and wait until it caught up (see the module
    docstring). ``settings`` should come from :func:`retail_settings`. With
    ``keep_worker``, the running worker is returned in ``Backfill.worker`` (the caller
    stops it); otherwise it is stopped here."""
    if not data_file.is_file():
        raise DemoError(
            f"{data_file}: no such file. Download the UCI Online Retail data set "
            "(https://archive.ics.uci.edu/dataset/352/online+retail, 'Online Retail.xlsx', "
            "saved as CSV or Parquet) and pass it with --data-file."
        )
    events_file = Path(settings.run_dir) / "online-retail" / "events.jsonl"
    events_file.parent.mkdir(parents=True, exist_ok=True)
    done = Backfill(events_file)
    started = time.perf_counter()

    output = run_command(
        console,
        settings,
        ["import", "online-retail", str(data_file), "--out", str(events_file), "--json"],
        capture=True,
    )
    done.report = json.loads(output)
    done.seconds["import"] = time.perf_counter() - started
    last = datetime.fromisoformat(done.report["last_event"].replace("Z", "+00:00"))
    done.as_of = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    console.print(
        f"imported {done.report['events_written']:,} events of {done.report['customers']:,} "
        f"customers ({done.report['first_event'][:10]} to {done.report['last_event'][:10]}; "
        f"{done.report['rows_rejected']:,} of {done.report['rows_read']:,} rows rejected: "
        + ", ".join(f"{n:,} {reason}" for reason, n in done.report["rejects"].items())
        + f"); scoring as of {done.as_of.date()}",
        highlight=False,
    )
    settings = settings.model_copy(update={"as_of": done.as_of})

    step = time.perf_counter()
    run_command(console, settings, ["train", "--data", "online-retail", str(data_file)])
    done.seconds["train"] = time.perf_counter() - step

    ensure_topics(settings)
    worker = WorkerChild(settings, Path(settings.run_dir) / "online-retail" / "worker.log")
    start_worker(console, worker)
    try:
        step = time.perf_counter()
        run_command(console, settings, ["replay", str(events_file)])
        done.seconds["replay"] = time.perf_counter() - step
        step = time.perf_counter()
        with console.status("waiting for the worker to apply every event…"):
            done.events_applied = wait_caught_up(settings, worker)
        done.seconds["worker_catch_up"] = time.perf_counter() - step
        done.seconds["total"] = time.perf_counter() - started
    except BaseException:
        worker.stop()
        raise
    if keep_worker:
        done.worker = worker
    else:
        worker.stop()
    return done


def wait_caught_up(
    settings: Settings, worker: WorkerChild, timeout: float = CATCH_UP_SECONDS
) -> int:
    """Wait until the worker's fences reach the end of every input partition; return the
    number of messages they cover."""
    ends = input_end_offsets(settings)
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    deadline = time.monotonic() + timeout
    while True:
        fences = store.read_fences(list(ends))
        if all(fences[tp] >= end - 1 for tp, end in ends.items()):
            return sum(ends.values())
        code = worker.exit_code()
        if code is not None:
            raise DemoError(f"the worker exited (code {code}):\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            behind = sum(max(end - 1 - fences[tp], 0) for tp, end in ends.items())
            raise DemoError(f"the worker is still {behind:,} events behind after {timeout:.0f} s")
        time.sleep(0.5)


def environment_lines(settings: Settings) -> list[str]:
    """``export`` lines that point a shell at this system (for `churnstream risk` etc.)."""
    env = settings_environment(settings)
    names = ("CHURN_TOPIC_PREFIX", "CHURN_REDIS_KEY_PREFIX", "CHURN_MODEL_DIR",
             "CHURN_ARCHIVE_DIR", "CHURN_RETENTION_DAYS", "CHURN_AS_OF",
             "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")  # fmt: skip
    return [f"export {name}={shlex.quote(env[name])}" for name in names if name in env]
