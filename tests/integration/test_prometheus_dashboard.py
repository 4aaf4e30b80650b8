"""The provisioned Grafana dashboard against a real Prometheus scraping a real worker, API and
monitor under traffic: every panel's PromQL expression must return data.

Prometheus is started by the code behind `churnstream infra up --prometheus` (its scrape
configuration generated from the settings), scraping every second. The worker, the API and
the monitor run as the CLI starts them; simulated customers stream through the shared Kafka
(with a few malformed and duplicate messages), and a client keeps asking the API for risks.

Realized ROC AUC needs scores logged one label horizon ago. The monitor's score log from
then is recreated: a snapshot of the scores the worker wrote, stamped one horizon and a day
back; the label join then reads the real event archive the worker kept.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from churnstream.infra import LocalStack
from churnstream.infra.processes import port_open, stop_pid, stop_process, tail
from churnstream.infra.prometheus import API_JOB, MONITOR_JOB, WORKER_JOB, PrometheusServer
from core.archive import EventArchive
from core.events import Event
from core.kafka_client import client_config
from core.keys import Keys
from core.producer import EventProducer
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from monitoring.labels import ScoreLog
from offline.simulator import SimulationConfig, simulate
from offline.train import bootstrap_from_simulation
from tests.support import CLI, REPO_ROOT, child_env, free_ports
from tests.support_worker import WorkerProcess, wait_drained

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
METRIC = re.compile(r"\bchurn_(worker|api|monitor)_[a-z0-9_]+\b")
JOB_OF_COMPONENT = {"worker": WORKER_JOB, "api": API_JOB, "monitor": MONITOR_JOB}
# Grafana's built-in interval variables, as Grafana would expand them for a 1 s scrape over
# a short time range (a window that still holds several scrapes).
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "30s", "$__range": "5m"}
CUSTOMERS = 150
DAYS = 30
LIVE_SHARE = 0.2  # the newest events are streamed live, the rest first, as a backfill
MALFORMED = [b"{not json", b'{"type":"teleport","event_id":"m1","customer_id":"C1"}']


# --- the dashboard's expressions -----------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r}: {self.expr}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard_queries() -> list[Query]:
    """Every PromQL expression of every provisioned dashboard, variables expanded."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        document = json.loads(path.read_text())
        assert not document.get("templating", {}).get("list"), (
            f"{path.name} has template variables: give them test values here"
        )
        for panel in _panels(document["panels"]):
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"{path.name}: unknown variable in {expr}"
                queries.append(Query(path.name, panel["title"], expr))
    return queries


def test_the_dashboard_has_queries_to_check() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    assert {m.group(1) for q in queries for m in METRIC.finditer(q.expr)} == {
        "worker",
        "api",
        "monitor",
    }


# --- Prometheus's HTTP API -----------------------------------------------------------------


def prometheus_get(server: PrometheusServer, path: str, **params: str) -> Any:
    url = f"{server.url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        document = json.load(response)
    assert document["status"] == "success", document
    return document["data"]


def query(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """The instant vector ``expr`` evaluates to now (a scalar becomes one unlabelled sample)."""
    data = prometheus_get(server, "/api/v1/query", query=expr)
    if data["resultType"] == "vector":
        return list(data["result"])
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    raise AssertionError(f"{expr}: unexpected result type {data['resultType']}")


def has_data(result: list[dict[str, Any]]) -> bool:
    """Some sample is a number: NaN is what a panel shows as no data."""
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def wait_targets_up(server: PrometheusServer, jobs: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        targets = prometheus_get(server, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if set(health) == jobs and all(state == "up" for state in health.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"scrape targets not all up within {timeout}s: {health}")


# --- the processes -------------------------------------------------------------------------


class CliProcess:
    """A `churnstream <command>` subprocess with its output in a log file."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*CLI, command],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
            )  # fmt: skip

    def wait_port(self, port: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", port):
            assert self.process.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, f"port {port} not open: {self.log_tail()}"
            time.sleep(0.3)

    def stop(self) -> None:
        stop_process(self.process, timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)


class Traffic:
    """Simulated customers through Kafka, then live; API lookups all along (threads)."""

    def __init__(self, settings: Settings, api_port: int, events: list[Event]) -> None:
        self.settings = settings
        self.api = f"http://127.0.0.1:{api_port}"
        self.events = sorted(events, key=lambda e: e.event_time)
        split = int(len(self.events) * (1 - LIVE_SHARE))
        self.history, self.live = self.events[:split], self.events[split:]
        self.customers = sorted({e.customer_id for e in events})
        self.history_sent = threading.Event()
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guard, args=(self._produce,), daemon=True),
            threading.Thread(target=self._guard, args=(self._ask_api,), daemon=True),
        ]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _guard(self, work: Any) -> None:
        try:
            work()
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def _produce(self) -> None:
        topics = Topics.from_settings(self.settings)
        raw = Producer(client_config(self.settings))
        for value in MALFORMED:
            raw.produce(topics.activity, value, b"C1")
        raw.flush(30)
        with EventProducer(self.settings) as producer:
            for event in self.history:
                producer.send(event)
            producer.flush()
            self.history_sent.set()
            rng = random.Random(3)
            for start in range(0, len(self.live), 50):  # ~250 events/s until the end
                if self.stopping.is_set():
                    break
                for event in self.live[start : start + 50]:
                    producer.send(event)
                producer.send(rng.choice(self.history))  # a duplicate: counted as ignored
                producer.flush()
                time.sleep(0.2)

    def _ask_api(self) -> None:
        rng = random.Random(4)
        while not self.stopping.is_set():
            for path in (
                f"/customers/{rng.choice(self.customers)}/risk",
                f"/customers/{rng.choice(self.customers)}/risk",
                "/customers/at-risk?limit=10",
                "/customers/nobody-by-this-id/risk",
            ):
                try:
                    with urllib.request.urlopen(self.api + path, timeout=5):
                        pass
                except urllib.error.HTTPError:
                    pass  # 404 and 503 (before the first scores) are traffic too
            time.sleep(0.05)


def register_champion(settings: Settings, client: redis.Redis) -> int:
    """A real starter model (with its drift reference); returns its label horizon in days."""
    model, metrics, reference = bootstrap_from_simulation(customers=200, days=60, seed=21)
    training = model.metadata.get("training", {})
    registry = ModelRegistry(settings, client)
    registry.register(model, metrics, training, reference=reference)
    registry.promote(model.version)
    return int(training.get("horizon_days", settings.label_horizon_days))


def process_env(settings: Settings, api_port: int) -> dict[str, str]:
    return child_env(settings, {"CHURN_API_PORT": str(api_port), "CHURN_API_ACCESS_LOG": "off"})


# --- the test ------------------------------------------------------------------------------


def test_every_dashboard_query_returns_data_from_live_processes(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    queries = dashboard_queries()
    api_port, monitor_port, prometheus_port = free_ports(3)
    settings = settings.model_copy(
        update={
            "monitor_metrics_port": monitor_port,
            "prometheus_port": prometheus_port,
            "monitor_interval_seconds": 8.0,
            "score_shift_bucket_seconds": 1.0,
            "archive_compact_seconds": 1.0,
        }
    )
    horizon_days = register_champion(settings, redis_client)
    start = datetime.now(UTC) - timedelta(days=DAYS)
    events = list(simulate(SimulationConfig(customers=CUSTOMERS, days=DAYS, seed=8, start=start)))

    stack = LocalStack.from_settings(settings, api_port, with_prometheus=True)
    stack.scrape_interval_seconds = 1.0
    server = stack.prometheus
    server.prepare()
    prometheus_pid = server.start()
    env = process_env(settings, api_port)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    api = CliProcess("api", env, tmp_path / "api.log")
    monitor = CliProcess("monitor", env, tmp_path / "monitor.log")
    try:
        server.wait_ready(prometheus_pid, timeout=60)
        worker.start()
        api.wait_port(api_port)
        monitor.wait_port(monitor_port)
        with Traffic(settings, api_port, events) as traffic:
            wait_targets_up(server, {WORKER_JOB, API_JOB, MONITOR_JOB})
            assert traffic.history_sent.wait(timeout=120), traffic.errors
            wait_drained(settings)
            # The label join reads the archive: wait for the history to be in it.
            archive = EventArchive(settings.archive_dir)
            deadline = time.monotonic() + 60
            while archive.count() < len(traffic.history) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert archive.count() >= len(traffic.history), worker.log_tail()
            store = FeatureStore(redis_client, Keys.of(settings))
            back = datetime.now(UTC) - timedelta(days=horizon_days + 1)
            assert ScoreLog(settings.score_log_dir).snapshot(store, back) is not None

            missing = {str(q): q for q in queries}
            results: dict[str, list[dict[str, Any]]] = {}
            # The monitor's next turn (every 8 s) runs a drift report (~5-20 s here), then
            # the label join of the snapshot above.
            deadline = time.monotonic() + 120
            while missing and time.monotonic() < deadline and not traffic.errors:
                for key, q in list(missing.items()):
                    results[key] = query(server, q.expr)
                    if has_data(results[key]):
                        del missing[key]
                time.sleep(1)
            assert not traffic.errors, traffic.errors
            assert not missing, (
                "no data for:\n"
                + "\n".join(f"{key} -> {results.get(key)}" for key in missing)
                + f"\n--- monitor log ---\n{monitor.log_tail()}"
            )

            # Each metric comes from its own process only (the API shows no drift share).
            for name in sorted({m.group(0) for q in queries for m in METRIC.finditer(q.expr)}):
                jobs = {s["metric"]["job"] for s in query(server, f"count by (job) ({name})")}
                assert jobs == {JOB_OF_COMPONENT[name.split("_")[1]]}, (name, jobs)
    finally:
        for process in (monitor, api):
            process.stop()
        worker.stop()
        stop_pid(prometheus_pid, server.markers, timeout=10)
