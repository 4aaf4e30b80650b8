"""The processes the fault suite runs and breaks: `churnstream worker`, `churnstream api`
(subprocesses with the suite's settings in their environment) and the services of its own
:class:`~churnstream.infra.LocalStack`, restarted one at a time."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from bench.common import CLI, REPO_ROOT, child_env
from churnstream.infra import LocalStack
from churnstream.infra.processes import (
    http_ok,
    kill_process,
    start_child,
    stop_pid,
    stop_process,
    tail,
)
from core.settings import Settings

log = logging.getLogger("bench.faults")


class ChildProcess:
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
        self.name = name
        self.args = args
        self.settings = settings
        self.health_url = health_url
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180) -> float:
        """Start and wait until healthy; return the seconds that took."""
        started = time.monotonic()
        self.starts += 1
        self.process = start_child(
            [*CLI, *self.args],
            name=self.name,
            log_file=self.log_path,
            ready=self.healthy,
            timeout=timeout,
            env=child_env(self.settings, self.extra_env),
            cwd=REPO_ROOT,
        )
        return time.monotonic() - started

    def healthy(self) -> bool:
        return http_ok(self.health_url, timeout=2)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.process is not None:
            kill_process(self.process)

    def stop(self, timeout: float = 60) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


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
