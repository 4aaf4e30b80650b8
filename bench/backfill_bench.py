"""Backfill benchmark: the raw Online Retail file to a system that has caught up, timed.

The steps of ``churnstream demo --data online-retail`` (see
:mod:`churnstream.demo.backfill`), each as the real command in a child process: import
the file (541,909 invoice lines → 22,186 events), train and promote a model, start a
worker, replay the events through Kafka, and wait until the worker's fences reach the end
of every input partition. ``backfill_seconds`` is the wall time from the raw file to the
caught-up worker; the steps' times are recorded too. Everything lives under a scratch
topic/key prefix and a temporary run directory (the topics are deleted afterwards). The
file comes from ``../shared/data/online_retail.parquet`` beside the repository (or
``CHURN_ONLINE_RETAIL_FILE``); without it the benchmark says so and records nothing.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.common import services, write_result
from bench.train_bench import data_file


def run(path: Path | None = None) -> dict[str, Any]:
    from churnstream.demo.backfill import backfill_online_retail, retail_settings
    from core.kafka_client import client_config
    from core.topics import Topics

    path = path or data_file()
    if not path.exists():
        message = f"skipped: the Online Retail file is absent ({path})"
        print(message)
        return {"skipped": message}
    prefix = f"benchbackfill{uuid.uuid4().hex[:8]}"
    with services() as svc, tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        settings = retail_settings(
            svc.settings.model_copy(update={"run_dir": Path(scratch)}), prefix=prefix
        )
        try:
            done = backfill_online_retail(Console(stderr=True), settings, path, keep_worker=False)
        finally:
            _delete_topics(settings, client_config, Topics)
    figures = {"backfill_seconds": round(done.seconds["total"], 1)}
    details = {
        "command": "make bench BENCH_ARGS='--only backfill'",
        "file": str(path),
        "steps_seconds": {k: round(v, 2) for k, v in done.seconds.items()},
        "events": done.report["events_written"],
        "customers": done.report["customers"],
        "rows_read": done.report["rows_read"],
        "events_applied": done.events_applied,
        "as_of": done.as_of.isoformat() if done.as_of else None,
        "how": "import, train, worker start, replay and catch-up as child processes "
        "(`churnstream import|train|worker|replay`), as in `churnstream demo --data "
        "online-retail`; catch-up = every input partition's fence at its end offset",
    }
    write_result("backfill", figures, details)
    return {**figures, **details}


def _delete_topics(settings: Any, client_config: Any, topics_class: Any) -> None:
    from confluent_kafka.admin import AdminClient

    topics = topics_class.from_settings(settings)
    names = [topics.activity, topics.transactions, topics.scores, topics.dlq]
    futures = AdminClient(client_config(settings)).delete_topics(names, operation_timeout=30)
    for future in futures.values():
        with contextlib.suppress(Exception):  # already gone, or never created
            future.result()
