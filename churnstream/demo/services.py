"""The API (``churnstream api``) and the monitor (``churnstream monitor``) as child
processes of the demo (see :mod:`churnstream.demo.children`), and the set of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from churnstream.demo.children import ServiceChild
from churnstream.demo.worker_child import WorkerChild
from churnstream.infra.processes import http_ok
from core.settings import Settings
from monitoring.reports import ReportStore


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
        return http_ok(f"{self.url}/ready")


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
        """Stop the monitor, then the API (the worker is stopped by the caller); say what
        was stopped."""
        said = []
        for child in (self.monitor, self.api):
            if child is not None and child.process is not None and child.process.returncode is None:
                said.append(child.stop_and_say())
        return said
