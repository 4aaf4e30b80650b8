"""The API (``churnstream api``) and the monitor (``churnstream monitor``) as child
processes of the demo: start, wait until ready, stop.

Each child runs in its own session (the terminal's Ctrl-C reaches only the demo, which
then stops its children in order), with its output appended to a log file, and with the
demo's run directory in its command line, so ``ps`` tells which demo it belongs to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from churnstream.demo.errors import DemoError
from churnstream.demo.worker_child import WorkerChild, worker_env
from core.settings import Settings
from monitoring.reports import ReportStore

STOP_SECONDS = 20.0  # SIGTERM, then SIGKILL after this long


class ServiceChild:
    """``churnstream COMMAND ARGS`` as a child process, its output in ``log_path``."""

    name = "service"

    def __init__(
        self,
        settings: Settings,
        args: list[str],
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.args, self.log_path = settings, args, log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def spawn(self) -> None:
        """Start the process and return at once (see :meth:`wait_ready`)."""
        code = (
            "from churnstream.cli import main; main()"
            f"  # churnstream demo {self.name}, run dir {self.settings.run_dir}"
        )
        env = worker_env(self.settings)
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out, open(os.devnull, "rb") as devnull:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, *self.args],
                stdin=devnull, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, close_fds=True,
            )  # fmt: skip

    def exit_code(self) -> int | None:
        """None while running (or never started), else the exit code."""
        return self.process.poll() if self.process is not None else None

    def ready(self) -> bool:
        """Whether the service answers; by default, whether it runs."""
        return self.exit_code() is None

    def wait_ready(self, timeout: float) -> None:
        """Wait until :meth:`ready`; :class:`DemoError` when it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise DemoError(f"the {self.name} exited (code {code}):\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.3)
        raise DemoError(
            f"the {self.name} was not ready within {timeout:.0f} s; log: {self.log_path}"
        )

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaps the process."""
        if self.process is None or self.process.returncode is not None:
            return
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ApiChild(ServiceChild):
    """``churnstream api`` on 127.0.0.1:``port``; ready once ``/ready`` answers 200."""

    name = "API"

    def __init__(self, settings: Settings, port: int, log_path: Path) -> None:
        env = {"CHURN_API_HOST": "127.0.0.1", "CHURN_API_PORT": str(port)}
        super().__init__(settings, ["api"], log_path, env)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False


class MonitorChild(ServiceChild):
    """``churnstream monitor``: a drift report at start, then every ``interval`` seconds.

    Retraining on drift is off unless ``retrain_on_drift``: a demo's live stream runs
    far faster than real time, so its features drift by design.
    """

    name = "monitor"

    def __init__(
        self, settings: Settings, log_path: Path, interval: float, retrain_on_drift: bool
    ) -> None:
        env = {
            "CHURN_MONITOR_INTERVAL_SECONDS": str(interval),
            "CHURN_RETRAIN_ON_DRIFT": "true" if retrain_on_drift else "false",
        }
        super().__init__(settings, ["monitor"], log_path, env)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.monitor_metrics_port}/metrics"


@dataclass
class DemoServices:
    """What the demo runs besides the stream (each ``None`` when not started)."""

    worker: WorkerChild | None = None
    api: ApiChild | None = None
    monitor: MonitorChild | None = None
    reports_dir: Path | None = None

    def drift_reports(self) -> int:
        """How many drift reports the monitor has written so far."""
        if self.reports_dir is None:
            return 0
        try:
            return len(ReportStore(self.reports_dir).read_index())
        except (OSError, ValueError):
            return 0

    def exited(self) -> str | None:
        """The first service that exited on its own, with its code and log; else None."""
        for name, child in (("worker", self.worker), ("API", self.api), ("monitor", self.monitor)):
            code = child.exit_code() if child is not None else None
            if code is not None and child is not None:
                return f"the {name} exited (code {code}); its log: {child.log_path}"
        return None

    def stop(self) -> list[str]:
        """Stop the monitor, then the API, then the worker; say what was stopped."""
        said = []
        for name, child in (("monitor", self.monitor), ("API", self.api)):
            if child is not None and child.process is not None and child.process.returncode is None:
                child.stop()
                said.append(f"{name} stopped; its log: {child.log_path}")
        return said
