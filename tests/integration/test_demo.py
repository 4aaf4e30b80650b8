"""`churnstream demo` as a user runs it: a subprocess that starts its own Kafka and Redis,
trains and promotes a starter model, runs a worker, streams simulated customers, and stops
everything it started (on --duration or Ctrl-C).

Each run uses its own run dir, model dir, consumer group and free ports, so it never touches
a developer's stack or the suite's own services.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support import (
    REPO_ROOT,
    alive,
    cli_env,
    free_ports,
    kill_leftovers,
    processes_mentioning,
)

pytestmark = pytest.mark.integration

DEMO = "from churnstream.cli import main; main()"
SMALL = ["--customers", "40", "--days", "10", "--train-customers", "300"]


def demo_env(run_dir: Path) -> dict[str, str]:
    kafka_port, controller_port, redis_port, web_port = free_ports(4)
    env = cli_env()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        CHURN_RUN_DIR=str(run_dir),
        CHURN_KAFKA_PORT=str(kafka_port),
        CHURN_KAFKA_CONTROLLER_PORT=str(controller_port),
        CHURN_REDIS_PORT=str(redis_port),
        CHURN_WORKER_WEB_PORT=str(web_port),
        CHURN_MODEL_DIR=str(run_dir.parent / "models"),
        CHURN_CONSUMER_GROUP=f"demo-test-{uuid.uuid4().hex[:8]}",
        CHURN_TOPIC_PARTITIONS="2",
        COLUMNS="120",
    )
    return env


def delivered(output: str) -> int:
    counts = re.findall(r"delivered ([\d,]+)", output)
    assert counts, output
    return int(counts[-1].replace(",", ""))


def scored(output: str) -> tuple[int, dict[str, int]]:
    """The final "scored K customers (high H, medium M, low L)" line: K and the bands."""
    found = re.search(
        r"^scored ([\d,]+) customers \(high ([\d,]+), medium ([\d,]+), low ([\d,]+)\)$",
        output,
        re.MULTILINE,
    )
    assert found, output
    total, high, medium, low = (int(g.replace(",", "")) for g in found.groups())
    return total, {"high": high, "medium": medium, "low": low}


def worker_pid(output: str) -> int:
    found = re.search(r"worker running \(pid (\d+)", output)
    assert found, output
    return int(found.group(1))


def assert_worker_stopped(output: str, run_dir: Path) -> None:
    assert not alive(worker_pid(output)), output
    assert f"worker stopped; its log: {run_dir / 'worker.log'}" in output
    assert "Starting" in (run_dir / "worker.log").read_text(errors="replace")


def test_demo_streams_events_and_stops_what_it_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    try:
        result = subprocess.run(
            [sys.executable, "-c", DEMO, "demo", "--duration", "5", *SMALL, "--rate", "400"],
            capture_output=True, text=True, timeout=240, env=demo_env(run_dir), cwd=REPO_ROOT,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "training a starter model" in output
        assert re.search(r"promoted to champion: validation ROC AUC 0\.\d{3}", output), output
        assert delivered(output) > 500, output  # ~400/s for 5 s, acknowledged by the broker
        assert "failed 0" in output
        total, bands = scored(output)
        assert total > 0, output  # the worker scored the streamed customers live
        assert sum(bands.values()) == total
        assert "at-risk now" in output
        assert_worker_stopped(output, run_dir)
        assert "local Kafka and Redis stopped" in output
        assert processes_mentioning(str(run_dir)) == {}  # broker, Redis and the worker
    finally:
        kill_leftovers(run_dir)


def test_ctrl_c_stops_the_stream_and_the_stack(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", DEMO, "demo", *SMALL, "--rate", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=demo_env(run_dir), cwd=REPO_ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []  # read as it comes, to know when the stream has started
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("worker running" in x for x in lines):
            assert process.poll() is None, "".join(lines)
            time.sleep(0.2)
        time.sleep(3)  # let events flow and be scored
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
        output = "".join(lines)
        assert process.returncode == 0, output
        assert "stopping" in output
        assert delivered(output) > 0
        assert re.search(
            r"streamed [\d,]+ events of [\d,]+ customers: [\d,]+ delivered, 0 failed", output
        )
        assert re.search(r"^scored [\d,]+ customers", output, re.MULTILINE), output
        assert_worker_stopped(output, run_dir)
        assert "local Kafka and Redis stopped" in output
        assert processes_mentioning(str(run_dir)) == {}
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        kill_leftovers(run_dir)
        reader.join(timeout=10)
