"""Running the real worker (`churnstream worker`) as a subprocess, as a user runs it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from churnstream.infra.processes import http_ok, kill_process, start_child, stop_process, tail
from core.kafka_client import ensure_topics, input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from tests.support import CLI, REPO_ROOT, child_env
from tests.support_models import recency_model


class WorkerProcess:
    """A `churnstream worker` subprocess that can be killed and restarted."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        self.process = start_child(
            [*CLI, "worker"], name="worker", log_file=self.log_path, ready=self.healthy,
            timeout=timeout, env=child_env(self.settings), cwd=REPO_ROOT, interval=0.3,
        )  # fmt: skip

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.settings.worker_web_port}/health")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None:
            kill_process(self.process)

    def stop(self) -> None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after 30 s."""
        if self.process is not None:
            stop_process(self.process, timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


def promote_recency_model(settings: Settings) -> None:
    """Register the recency model and make it the champion the worker scores with."""
    registry = ModelRegistry(settings, connect_redis(settings))
    registry.promote(registry.register(recency_model(), metrics={}, training={}).version)


def started_worker(settings: Settings, log_path: Path) -> WorkerProcess:
    """A running worker scoring with the recency model, its topics created (the caller
    stops it)."""
    promote_recency_model(settings)
    ensure_topics(settings)
    worker = WorkerProcess(settings, log_path)
    worker.start()
    return worker


def wait_drained(settings: Settings, timeout: float = 120) -> None:
    """Wait until the worker's fences reach the end of every input partition."""
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    deadline = time.monotonic() + timeout
    ends = input_end_offsets(settings)
    while time.monotonic() < deadline:
        fences = store.read_fences(sorted(ends))
        if all(fences[tp] >= end - 1 for tp, end in ends.items()):
            return
        time.sleep(0.25)
    behind = {tp: (fences[tp], end - 1) for tp, end in ends.items() if fences[tp] < end - 1}
    raise TimeoutError(f"worker did not drain the topics within {timeout}s: {behind}")


def customers_in(events: Iterable[object]) -> set[str]:
    return {e.customer_id for e in events}  # type: ignore[attr-defined]
