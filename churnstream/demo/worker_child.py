"""The worker (``churnstream worker``) as a child process of the demo: start, wait, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from churnstream.demo.errors import DemoError
from churnstream.infra.processes import port_open
from core.settings import Settings, env_var_name

WORKER_READY_SECONDS = 90.0
WORKER_STOP_SECONDS = 20.0  # SIGTERM, then SIGKILL after this long


def worker_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every setting of ``settings`` in its variable."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        variable = env_var_name(name)
        value = getattr(settings, name)
        if value is None:
            env.pop(variable, None)
        elif isinstance(value, SecretStr):
            env[variable] = value.get_secret_value()
        elif isinstance(value, dict):  # e.g. CHURN_PLAN_VALUES: read back as JSON
            env[variable] = json.dumps(value)
        else:
            env[variable] = str(value)
    return env


class WorkerChild:
    """``churnstream worker`` as a child process, its output in ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = settings.worker_web_port
        self.process: subprocess.Popen[bytes] | None = None
        self.exited_early: int | None = None  # exit code, when it ended before stop()

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        # The comment in the code names the run dir, so `ps` (and tests) can tell which
        # demo a worker belongs to. A new session: the terminal's Ctrl-C reaches only the
        # demo, which then stops the worker in order.
        code = (
            "from churnstream.cli import main; main()"
            f"  # churnstream demo worker, run dir {self.settings.run_dir}"
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out, open(os.devnull, "rb") as devnull:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, "worker", "--web-port", str(self.port)],
                stdin=devnull,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=worker_env(self.settings),
                start_new_session=True,
                close_fds=True,
            )

    def exit_code(self) -> int | None:
        """None while running (or never started), else the exit code."""
        return self.process.poll() if self.process is not None else None

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise DemoError(f"the worker exited (code {code}):\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        raise DemoError(f"the worker did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = WORKER_STOP_SECONDS) -> None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after ``timeout``."""
        if self.process is None or self.process.returncode is not None:
            return
        code = self.process.poll()
        if code is not None:
            self.exited_early = code
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


def start_worker(console: Console, child: WorkerChild) -> None:
    if port_open("127.0.0.1", child.port):
        raise DemoError(
            f"port {child.port} is already in use (another worker?): set "
            f"{env_var_name('worker_web_port')} to a free port, or use --no-worker"
        )
    child.start()
    with console.status(f"starting the worker (log: {child.log_path})…"):
        child.wait_ready(WORKER_READY_SECONDS)
    console.print(
        f"worker running (pid {child.pid}, metrics {child.metrics_url}, log {child.log_path})",
        highlight=False,
    )
