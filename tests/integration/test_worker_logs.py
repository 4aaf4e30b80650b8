"""`churnstream worker` writes its log in ``CHURN_LOG_FORMAT``, as the other commands do:
its own lines, Faust's and those of the libraries it uses, so that a log shipper can read
every line (librdkafka writes its own, ``%<level>|...``, and they are left as they are)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.kafka_client import ensure_topics
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate
from tests.integration.test_worker import produce
from tests.support_worker import WorkerProcess, promote_recency_model, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
LIBRDKAFKA = re.compile(r"^%\d\|")
KEY_VALUE = re.compile(r"^ts=\S+ level=[a-z]+ logger=\S+ msg=")


def worker_log_lines(settings: Settings, log_path: Path) -> list[str]:
    """The lines a worker writes while it applies a few events and stops on SIGTERM."""
    promote_recency_model(settings)
    ensure_topics(settings)
    worker = WorkerProcess(settings, log_path)
    worker.start()
    try:
        produce(
            settings, list(simulate(SimulationConfig(customers=20, days=5, seed=7, start=START)))
        )
        wait_drained(settings)
    finally:
        worker.stop()
    return [line for line in log_path.read_text().splitlines() if not LIBRDKAFKA.match(line)]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_worker_logs_every_line_in_the_configured_format(
    settings: Settings, tmp_path: Path, log_format: str
) -> None:
    settings = settings.model_copy(update={"log_format": log_format})
    lines = worker_log_lines(settings, tmp_path / "worker.log")
    if log_format == "json":
        events = [json.loads(line) for line in lines]  # every line one JSON object
        loggers = {e["logger"] for e in events}
        assert all(e.keys() >= {"ts", "level", "logger", "msg"} for e in events)
    else:
        assert [line for line in lines if not KEY_VALUE.match(line)] == []
        loggers = {line.split(" logger=", 1)[1].split(" ", 1)[0] for line in lines}
    # its own lines (the outbox taken over at assignment) and Faust's (start, stop)
    assert {"stream.delivery", "faust.worker"} <= loggers, sorted(loggers)
