"""`churnstream demo` as a user runs it: a subprocess that starts its own Kafka and Redis,
streams simulated customers, and stops everything it started (on --duration or Ctrl-C).

Each run uses its own run dir and free ports, so it never touches a developer's stack or
the suite's own services.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, cli_env, free_ports, kill_leftovers, processes_mentioning

pytestmark = pytest.mark.integration

DEMO = "from churnstream.cli import main; main()"


def demo_env(run_dir: Path) -> dict[str, str]:
    kafka_port, controller_port, redis_port = free_ports(3)
    env = cli_env()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        CHURN_RUN_DIR=str(run_dir),
        CHURN_KAFKA_PORT=str(kafka_port),
        CHURN_KAFKA_CONTROLLER_PORT=str(controller_port),
        CHURN_REDIS_PORT=str(redis_port),
        CHURN_TOPIC_PARTITIONS="2",
        COLUMNS="120",
    )
    return env


def delivered(output: str) -> int:
    counts = re.findall(r"delivered ([\d,]+)", output)
    assert counts, output
    return int(counts[-1].replace(",", ""))


def test_demo_streams_events_and_stops_what_it_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    try:
        result = subprocess.run(
            [sys.executable, "-c", DEMO, "demo", "--duration", "5", "--customers", "40",
             "--days", "10", "--rate", "400"],
            capture_output=True, text=True, timeout=240, env=demo_env(run_dir), cwd=REPO_ROOT,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert delivered(output) > 500, output  # ~400/s for 5 s, acknowledged by the broker
        assert "failed 0" in output
        assert "local Kafka and Redis stopped" in output
        assert processes_mentioning(str(run_dir)) == {}
    finally:
        kill_leftovers(run_dir)


def test_ctrl_c_stops_the_stream_and_the_stack(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", DEMO, "demo", "--customers", "40", "--days", "10", "--rate", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=demo_env(run_dir), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not _kafka_log_says_started(run_dir):
            time.sleep(0.5)
        time.sleep(4)  # let events flow
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 0, output
        assert "stopping" in output
        assert delivered(output) > 0
        assert re.search(
            r"streamed [\d,]+ events of [\d,]+ customers: [\d,]+ delivered, 0 failed", output
        )
        assert "local Kafka and Redis stopped" in output
        assert processes_mentioning(str(run_dir)) == {}
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        kill_leftovers(run_dir)


def _kafka_log_says_started(run_dir: Path) -> bool:
    log = run_dir / "kafka" / "kafka.log"
    return log.exists() and "Kafka Server started" in log.read_text(errors="replace")
