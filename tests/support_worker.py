"""Running the real worker (`churnstream worker`) as a subprocess, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from core.kafka_client import input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings, env_var_name
from core.store import FeatureStore
from tests.support import REPO_ROOT, cli_env

_SETTINGS_PASSED = (
    "kafka_bootstrap_servers", "redis_url", "topic_prefix", "topic_partitions",
    "redis_key_prefix", "run_dir", "consumer_group", "model_dir", "worker_web_port",
    "archive_dir", "archive_enabled", "archive_compact_seconds",
    "rescore_after_seconds", "rescore_tick_seconds", "model_check_seconds",
    "batch_size", "batch_within_ms", "worker_engine",
)  # fmt: skip


def settings_env(settings: Settings) -> dict[str, str]:
    env = cli_env()
    for name in _SETTINGS_PASSED:
        env[env_var_name(name)] = str(getattr(settings, name))
    return env


class WorkerProcess:
    """A `churnstream worker` subprocess that can be killed and restarted."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from churnstream.cli import main; main()", "worker"],
            stdout=log, stderr=subprocess.STDOUT, env=settings_env(self.settings), cwd=REPO_ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not healthy within {timeout}s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.settings.worker_web_port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


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
