"""A server under benchmark as a subprocess (``churnstream worker``, ``churnstream api``):
started with the benchmark's settings in its environment, its output appended to a log
file, ready once a URL answers 200, stopped with SIGTERM (SIGKILL after a while)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import REPO_ROOT
from churnstream.infra.processes import http_ok, kill_process, start_child, stop_process, tail


class BenchChild:
    """One server subprocess: ``start`` it with a command line and an environment."""

    def __init__(
        self, name: str, log_path: Path, ready_url: str, stop_seconds: float = 30.0
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_url = ready_url
        self.stop_seconds = stop_seconds
        self.process: subprocess.Popen[bytes] | None = None

    def launch(
        self, argv: list[str], env: dict[str, str], timeout: float, interval: float = 0.1
    ) -> float:
        """Start ``argv`` and wait until :meth:`ready`; return the seconds that took.
        Raises :class:`~churnstream.infra.InfraError` (with the log's tail) otherwise."""
        started = time.perf_counter()
        self.process = start_child(
            argv,
            name=self.name,
            log_file=self.log_path,
            ready=self.ready,
            timeout=timeout,
            env=env,
            cwd=REPO_ROOT,
            interval=interval,
        )
        return time.perf_counter() - started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def ready(self) -> bool:
        return http_ok(self.ready_url, timeout=2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_seconds``."""
        if self.process is not None:
            stop_process(self.process, timeout=self.stop_seconds)

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.process is not None:
            kill_process(self.process)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)
