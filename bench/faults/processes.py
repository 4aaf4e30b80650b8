"""The processes the fault suite runs and breaks: `churnstream worker`, `churnstream api`
(subprocesses with the suite's settings in their environment) and the services of its own
:class:`~churnstream.infra.LocalStack`, restarted one at a time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bench.children import BenchChild
from bench.common import CLI, child_env
from churnstream.infra import LocalStack
from churnstream.infra.processes import (
    stop_pid,
)
from core.settings import Settings

log = logging.getLogger("bench.faults")


class ChildProcess(BenchChild):
    """A `churnstream <command>` subprocess that answers 200 on ``health_url`` when up."""

    def __init__(
        self,
        name: str,
        args: list[str],
        settings: Settings,
        health_url: str,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, log_path, health_url, stop_seconds=60)
        self.args = args
        self.settings = settings
        self.extra_env = extra_env or {}
        self.starts = 0

    def start(self, timeout: float = 180) -> float:
        """Start and wait until healthy; return the seconds that took."""
        self.starts += 1
        return self.launch([*CLI, *self.args], child_env(self.settings, self.extra_env), timeout)

    def log_tail(self, lines: int = 40) -> str:
        return super().log_tail(lines)


def worker_process(settings: Settings, log_dir: Path) -> ChildProcess:
    return ChildProcess(
        "worker",
        ["worker"],
        settings,
        f"http://127.0.0.1:{settings.worker_web_port}/health",
        log_dir / "worker.log",
    )


def api_process(settings: Settings, port: int, log_dir: Path) -> ChildProcess:
    return ChildProcess(
        "api",
        ["api", "--host", "127.0.0.1", "--port", str(port)],
        settings,
        f"http://127.0.0.1:{port}/health",
        log_dir / "api.log",
        extra_env={"CHURN_API_KEYS": "", "CHURN_REPORTS_DIR": str(log_dir / "reports")},
    )


def restart_service(stack: LocalStack, name: str) -> float:
    """Stop one service of ``stack`` gracefully (SIGTERM: Redis writes its append-only
    file, Kafka shuts down cleanly) and start it again; return the seconds it was down."""
    status = stack.status()[name]
    if status.pid is None:
        raise RuntimeError(f"{name} is not running: {status.detail}")
    service = stack.redis if name == "redis" else stack.kafka
    started = time.monotonic()
    stop_pid(status.pid, service.markers, timeout=60)
    stack.up(timeout=180)
    return time.monotonic() - started
