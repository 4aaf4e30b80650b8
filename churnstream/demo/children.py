"""A ``churnstream`` command as a child process of the demo: start, wait until ready, stop.

Each child runs in its own session (the terminal's Ctrl-C reaches only the demo, which
then stops its children in order), with its output appended to a log file, with the
demo's settings in its environment, and with the demo's run directory in its command
line, so ``ps`` (and tests) tell which demo it belongs to.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from churnstream.demo.errors import DemoError
from churnstream.infra.processes import churnstream_argv, stop_process, tail, wait_ready
from core.settings import Settings
from core.settings_env import settings_environment

STOP_SECONDS = 20.0  # SIGTERM, then SIGKILL after this long


class ServiceChild:
    """``churnstream ARGS`` as a child process, its output in ``log_path``."""

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
        self.exited_early: int | None = None  # exit code, when it ended before stop()

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def spawn(self) -> None:
        """Start the process and return at once (see :meth:`wait_ready`)."""
        note = f"churnstream demo {self.name}, run dir {self.settings.run_dir}"
        env = settings_environment(self.settings, self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out, open(os.devnull, "rb") as devnull:
            self.process = subprocess.Popen(
                churnstream_argv(*self.args, note=note),
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
        if self.process is None:
            raise DemoError(f"the {self.name} was never started")
        if wait_ready(self.process, self.ready, timeout, interval=0.3) == "ready":
            return
        code = self.exit_code()
        if code is not None:
            raise DemoError(f"the {self.name} exited (code {code}):\n{self.log_tail()}")
        raise DemoError(
            f"the {self.name} was not ready within {timeout:.0f} s; log: {self.log_path}\n"
            f"{self.log_tail()}"
        )

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaps the process. A child that had
        already exited keeps its code in :attr:`exited_early`."""
        if self.process is None or self.process.returncode is not None:
            return
        code = self.process.poll()
        if code is not None:
            self.exited_early = code
            return
        stop_process(self.process, timeout)

    def stop_and_say(self) -> str:
        """:meth:`stop`, then a line (rich markup) for the user: stopped, or had exited
        before with its code; and where its log is."""
        self.stop()
        if self.exited_early is None:
            return f"{self.name} stopped; its log: {self.log_path}"
        code = self.exited_early
        return f"[red]the {self.name} had exited (code {code});[/] its log: {self.log_path}"

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)
