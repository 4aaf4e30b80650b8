"""The processes the fault suite runs and breaks: `churnstream worker`, `churnstream api`
(subprocesses with the suite's settings in their environment) and the services of its own
:class:`~churnstream.infra.LocalStack`, restarted one at a time."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from churnstream.infra import LocalStack
from churnstream.infra.processes import stop_pid
from core.settings import Settings, env_var_name

log = logging.getLogger("bench.faults")

REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings the subprocesses get from the environment (the rest: defaults).
SETTINGS_PASSED = (
    "kafka_bootstrap_servers", "redis_url", "topic_prefix", "topic_partitions",
    "redis_key_prefix", "consumer_group", "run_dir", "model_dir", "archive_dir",
    "worker_web_port", "worker_engine", "worker_session_timeout_seconds", "max_event_bytes",
    "log_level",
)  # fmt: skip


def environment(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for name in SETTINGS_PASSED:
        env[env_var_name(name)] = str(getattr(settings, name))
    env.update(extra or {})
    return env


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
        command = [sys.executable, "-c", "from churnstream.cli import main; main()", *self.args]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment(self.settings, self.extra_env),
                cwd=REPO_ROOT,
            )
        self.starts += 1
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self.healthy():
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not healthy within {timeout:.0f}s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


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
