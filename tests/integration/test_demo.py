"""`churnstream demo` as a user runs it: a subprocess that starts its own Kafka and Redis,
trains and promotes a starter model, runs a worker and the API, backfills the simulated
history, starts the monitor, streams live events, and stops everything it started (on
--duration or Ctrl-C).

Each run uses its own run dir, model dir, reports dir, consumer group and free ports, so it
never touches a developer's stack or the suite's own services. While a demo runs, a thread
reads the API's risk distribution every half second (from the moment the API answers), so
the High band's share is checked at every point a user could look at the dashboard.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from churnstream.infra.processes import is_alive, kill_process
from churnstream.infra.redis_cluster import free_cluster_port
from offline.train import HIGH_QUANTILE
from tests.support import (
    CLI,
    REPO_ROOT,
    child_env,
    free_ports,
    kill_leftovers,
    processes_mentioning,
)

pytestmark = pytest.mark.integration

SMALL = ["--customers", "300", "--days", "21", "--drift-every", "600"]
POLICY_HIGH_SHARE = 1 - HIGH_QUANTILE  # the starter model's band policy
DRIFT_REPORT_SECONDS = 60.0


def demo_env(run_dir: Path) -> tuple[dict[str, str], int]:
    """The demo's environment (everything under ``run_dir``'s parent) and its API port."""
    kafka, controller, redis, web, api, monitor = free_ports(6)
    cluster = free_cluster_port()
    base = run_dir.parent
    env = child_env()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        CHURN_RUN_DIR=str(run_dir),
        CHURN_KAFKA_PORT=str(kafka),
        CHURN_KAFKA_CONTROLLER_PORT=str(controller),
        CHURN_REDIS_PORT=str(redis),
        CHURN_REDIS_CLUSTER_PORT=str(cluster),
        CHURN_WORKER_WEB_PORT=str(web),
        CHURN_API_PORT=str(api),
        CHURN_MONITOR_METRICS_PORT=str(monitor),
        CHURN_MODEL_DIR=str(base / "models"),
        CHURN_ARCHIVE_DIR=str(base / "archive"),
        CHURN_REPORTS_DIR=str(base / "reports"),
        CHURN_SCORE_LOG_DIR=str(base / "score-log"),
        CHURN_CONSUMER_GROUP=f"demo-test-{uuid.uuid4().hex[:8]}",
        CHURN_TOPIC_PARTITIONS="2",
        COLUMNS="120",
    )
    return env, api


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class DemoRun:
    """A running demo: its output lines (with when each came) and API samples."""

    def __init__(self, args: list[str], run_dir: Path) -> None:
        env, port = demo_env(run_dir)
        self.run_dir, self.url = run_dir, f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*CLI, "demo", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, cwd=REPO_ROOT,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self.samples: list[tuple[float, int, int]] = []  # (time, scored, high)
        self.sampling = True
        self.reader = threading.Thread(target=self._read)
        self.sampler = threading.Thread(target=self._sample)
        self.reader.start()
        self.sampler.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            self.lines.append((time.monotonic(), line))

    def _sample(self) -> None:
        while self.sampling:
            try:
                page = get_json(f"{self.url}/stats/risk-distribution")
                if page["bands"] is not None:
                    self.samples.append(
                        (time.monotonic(), page["customers"], page["bands"]["high"])
                    )
            except (OSError, ValueError):
                pass  # not up yet, or stopping
            time.sleep(0.5)

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        """When the first line matching ``pattern`` came, and its match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return at, found
            assert self.process.poll() is None or self.reader.is_alive(), self.output
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")

    def finish(self, timeout: float) -> str:
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.sampling = False
        self.sampler.join(timeout=10)
        return self.output

    def kill(self) -> None:
        self.sampling = False
        kill_process(self.process)
        kill_leftovers(self.run_dir)
        self.reader.join(timeout=10)
        self.sampler.join(timeout=10)


def index_of(output: str, pattern: str) -> int:
    found = re.search(pattern, output, re.MULTILINE)
    assert found, f"{pattern!r} not in:\n{output}"
    return found.start()


def assert_backfill_before_live(output: str) -> int:
    """The history is sent, then applied, before the live events start; returns the number
    of customers in the history."""
    sent = index_of(output, r"^backfill: [\d,]+ events delivered, 0 failed")
    applied = index_of(output, r"^backfill done: the worker has applied the history")
    live = index_of(output, r"^live: streaming")
    assert sent < applied < live, output
    found = re.search(r"^backfill: ([\d,]+) events of ([\d,]+) customers", output, re.MULTILINE)
    assert found, output
    assert int(found.group(1).replace(",", "")) > 1000
    return int(found.group(2).replace(",", ""))


def assert_high_share_bounded(samples: list[tuple[float, int, int]]) -> None:
    """At no sampled moment does the High band hold more than twice the policy's share."""
    scored = [(total, high) for _, total, high in samples if total > 0]
    assert len(scored) >= 5, samples  # the check ran through the demo, not once
    worst = max(high / total for total, high in scored)
    assert worst <= 2 * POLICY_HIGH_SHARE, (worst, scored)


def assert_everything_stopped(output: str, run_dir: Path) -> None:
    found = re.search(r"worker running \(pid (\d+)", output)
    assert found, output
    assert not is_alive(int(found.group(1))), output
    for name, log in (("monitor", "monitor.log"), ("API", "api.log"), ("worker", "worker.log")):
        assert f"{name} stopped; its log: {run_dir / log}" in output
    assert "local Kafka and Redis stopped" in output
    assert processes_mentioning(str(run_dir)) == {}  # broker, Redis, worker, API, monitor


def test_ctrl_c_after_backfill_live_dashboard_and_drift_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    demo = DemoRun([*SMALL, "--rate", "200"], run_dir)
    try:
        live_at, _ = demo.wait_for(r"^live: streaming", timeout=300)
        history_customers = assert_backfill_before_live(demo.output)
        # The worker applied the whole history before the live phase: every customer of the
        # history is scored, and the API serves them.
        first = get_json(f"{demo.url}/stats/risk-distribution")
        assert first["customers"] >= history_customers, first
        with urllib.request.urlopen(f"{demo.url}/", timeout=10) as response:
            assert response.status == 200
            assert "text/html" in response.headers["content-type"]
            assert "<title>churnstream" in response.read().decode()
        assert f"dashboard: {demo.url}/" in demo.output
        deadline = live_at + DRIFT_REPORT_SECONDS
        while not get_json(f"{demo.url}/reports/drift")["reports"]:
            assert time.monotonic() < deadline, "no drift report within 60 s of the live phase"
            assert demo.process.poll() is None, demo.output
            time.sleep(1)
        reported = time.monotonic() - live_at
        time.sleep(2)  # a few more samples of the live phase
        demo.process.send_signal(signal.SIGINT)
        output = demo.finish(timeout=120)
        assert demo.process.returncode == 0, output
        assert "stopping" in output
        assert re.search(
            r"streamed [\d,]+ live events of [\d,]+ customers: [\d,]+ delivered, 0 failed", output
        )
        assert_high_share_bounded(demo.samples)
        assert_everything_stopped(output, run_dir)
        first_scored = next(at for at, total, _ in demo.samples if total > 0)
        print(
            f"scored customers on the API {first_scored - demo.started:.1f} s after start; "
            f"first drift report {reported:.1f} s after the live phase began"
        )
    finally:
        demo.kill()


@pytest.mark.parametrize("redis_kind", ["single", "cluster"])
def test_duration_stops_everything(tmp_path: Path, redis_kind: str) -> None:
    """On one Redis server, and with ``--redis-cluster`` on a local cluster of three
    masters that the demo starts and stops."""
    run_dir = tmp_path / "run"
    args = [*SMALL, "--rate", "400", "--duration", "5"]
    if redis_kind == "cluster":
        args.append("--redis-cluster")
    demo = DemoRun(args, run_dir)
    try:
        output = demo.finish(timeout=300)
        assert demo.process.returncode == 0, output
        assert "training a starter model" in output
        assert re.search(r"promoted to champion: validation ROC AUC 0\.\d{3}", output), output
        assert_backfill_before_live(output)
        sent = re.search(
            r"streamed ([\d,]+) live events of [\d,]+ customers: ([\d,]+) delivered, 0 failed",
            output,
        )
        assert sent, output
        assert int(sent.group(2).replace(",", "")) > 500  # ~400/s for 5 s
        found = re.search(
            r"^scored ([\d,]+) customers \(high ([\d,]+), medium ([\d,]+), low ([\d,]+)\)$",
            output,
            re.MULTILINE,
        )
        assert found, output
        total, high, medium, low = (int(g.replace(",", "")) for g in found.groups())
        assert total > 0 and high + medium + low == total
        assert high <= 2 * POLICY_HIGH_SHARE * total
        assert_high_share_bounded(demo.samples)
        assert "at-risk now" in output
        if redis_kind == "cluster":
            assert "starting local Kafka and a Redis Cluster" in output
            assert len(list((run_dir / "redis-cluster").iterdir())) == 3  # its three masters
        assert_everything_stopped(output, run_dir)
    finally:
        demo.kill()
