"""The worker (``churnstream worker``) as a child process of the demo: start, wait, stop."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from churnstream.demo.children import ServiceChild
from churnstream.demo.errors import DemoError
from churnstream.infra.processes import http_ok, port_open
from core.settings import Settings, env_var_name

WORKER_READY_SECONDS = 90.0


class WorkerChild(ServiceChild):
    """``churnstream worker`` as a child process, its output in ``log_path``; ready once
    its ``/health`` answers 200. Stopping it (SIGTERM) lets it finish its batch."""

    name = "worker"

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = settings.worker_web_port
        super().__init__(settings, ["worker", "--web-port", str(self.port)], log_path)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/health")


def start_worker(console: Console, child: WorkerChild) -> None:
    if port_open("127.0.0.1", child.port):
        raise DemoError(
            f"port {child.port} is already in use (another worker?): set "
            f"{env_var_name('worker_web_port')} to a free port, or use --no-worker"
        )
    child.spawn()
    wait_for_worker(console, child)


def wait_for_worker(console: Console, child: WorkerChild) -> None:
    """Wait until the started worker answers (a spinner meanwhile), then say where it is."""
    with console.status(f"starting the worker (log: {child.log_path})…"):
        child.wait_ready(WORKER_READY_SECONDS)
    console.print(
        f"worker running (pid {child.pid}, metrics {child.metrics_url}, log {child.log_path})",
        highlight=False,
    )
