"""`churnstream infra` against real processes: a KRaft broker from Maven Central jars,
Debian's redis-server and, with `up --prometheus`, Debian's prometheus.

Every stack here lives in its own run dir under pytest's tmp dir and on free ports picked by
binding to port 0, so it never collides with a developer's stack or the suite's own. The CLI
runs in subprocesses, as a user runs it: the services must outlive the command that started
them. Which processes exist is checked independently, by reading /proc.

The tests sharing the ``running`` stack run in file order; the one that stops it comes last.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from churnstream.infra import InfraError, LocalStack
from churnstream.infra.kafka import KafkaBroker
from churnstream.infra.processes import is_alive, stop_pid
from churnstream.infra.prometheus_alerts import alert_rules
from core.settings import Settings
from core.topics import BASE_NAMES
from tests.support import REPO_ROOT, child_env, free_ports, kill_leftovers, processes_mentioning

pytestmark = pytest.mark.integration

CLI = "from churnstream.commands.infra_command import infra_app; infra_app()"
WORKER_PORT, API_PORT = free_ports(2)
# What `up --prometheus` scrapes comes from the settings, read from the environment.
ENV = dict(
    child_env(),
    CHURN_WORKER_WEB_PORT=str(WORKER_PORT),
    CHURN_API_PORT=str(API_PORT),
    CHURN_MONITOR_METRICS_PORT="0",
)


def cli(
    *args: str, timeout: float = 300, env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    """Run ``churnstream infra <args>`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


@dataclass(frozen=True)
class Handle:
    run_dir: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    prometheus_port: int

    @property
    def args(self) -> list[str]:
        return [
            "--run-dir",
            str(self.run_dir),
            "--kafka-port",
            str(self.kafka_port),
            "--kafka-controller-port",
            str(self.controller_port),
            "--redis-port",
            str(self.redis_port),
        ]

    @property
    def up_args(self) -> list[str]:
        return [*self.args, "--prometheus", "--prometheus-port", str(self.prometheus_port)]

    def pids(self) -> dict[str, int]:
        return {
            name: int((self.run_dir / name / f"{name}.pid").read_text())
            for name in ("kafka", "redis", "prometheus")
        }

    def stack(self) -> LocalStack:
        return LocalStack(
            self.run_dir,
            kafka_port=self.kafka_port,
            kafka_controller_port=self.controller_port,
            redis_port=self.redis_port,
            prometheus_port=self.prometheus_port,
        )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handle]:
    """One stack for the module (with Prometheus), started by two `up` commands racing each
    other. The scrape targets come from the settings: a worker on a port nothing uses."""
    run_dir = (tmp_path_factory.mktemp("infra") / "run").resolve()
    handle = Handle(run_dir, *free_ports(4))
    try:
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    subprocess.Popen(
                        [sys.executable, "-c", CLI, "up", *handle.up_args],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=ENV,
                        cwd=REPO_ROOT,
                    )
                )
                for _ in range(2)
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, f"up failed:\n{out}\n{err}"
        yield handle
    finally:
        cli("down", *handle.args)
        kill_leftovers(run_dir)


def test_racing_ups_start_one_copy_of_each_service(running: Handle) -> None:
    mentioning = processes_mentioning(str(running.run_dir)).values()
    assert sum("kafka.Kafka" in line for line in mentioning) == 1
    assert sum("redis-server" in line for line in mentioning) == 1
    assert sum("prometheus --config.file" in line for line in mentioning) == 1


def poll_prometheus(
    running: Handle,
    path: str,
    read: Callable[[Any], dict[str, str]],
    expected: dict[str, str],
    timeout: float,
) -> tuple[dict[str, str], Any]:
    """``read`` of the ``data`` Prometheus's HTTP API answers at ``path``, polled until it
    is ``expected`` or ``timeout`` seconds have passed (Prometheus loads targets and rules
    just after it starts or reloads, and evaluates rules on its own clock); returns the
    last reading and the data it was read from."""
    url = f"http://127.0.0.1:{running.prometheus_port}{path}"
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    data: Any = None
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.load(response)["data"]
        seen = read(data)
    return seen, data


def scrape_urls(running: Handle, expected: dict[str, str]) -> dict[str, str]:
    """The scrape URL of each job, once they are ``expected`` (or after 30 s)."""
    scraped, _ = poll_prometheus(
        running,
        "/api/v1/targets",
        lambda data: {t["labels"]["job"]: t["scrapeUrl"] for t in data["activeTargets"]},
        expected,
        timeout=30,
    )
    return scraped


def test_prometheus_scrapes_the_ports_in_the_settings(running: Handle) -> None:
    expected = {
        "churnstream-worker": f"http://127.0.0.1:{WORKER_PORT}/metrics",
        "churnstream-api": f"http://127.0.0.1:{API_PORT}/metrics",
    }  # CHURN_MONITOR_METRICS_PORT=0: the monitor serves no metrics
    assert scrape_urls(running, expected) == expected


def test_prometheus_evaluates_every_alerting_rule(running: Handle) -> None:
    """The rules `up --prometheus` writes are loaded, and each has been evaluated without
    an error (health "ok"; "unknown" until its first evaluation)."""
    expected = {rule.name: "ok" for rule in alert_rules()}
    health, data = poll_prometheus(
        running,
        "/api/v1/rules?type=alert",
        lambda data: {r["name"]: r["health"] for g in data["groups"] for r in g["rules"]},
        expected,
        timeout=60,
    )
    assert health == expected, [
        (r["name"], r.get("lastError"))
        for g in (data or {}).get("groups", [])
        for r in g["rules"]
        if r["health"] != "ok"
    ]


def test_services_outlive_the_command_and_answer(running: Handle) -> None:
    pids = running.pids()
    for pid in pids.values():
        assert is_alive(pid)
        assert os.getsid(pid) == pid  # detached: leader of its own session
    client = redis.Redis(host="127.0.0.1", port=running.redis_port)
    assert client.ping()
    client.close()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{running.kafka_port}"})
    topics = admin.list_topics(timeout=10).topics
    assert set(BASE_NAMES) <= set(topics)  # `up` created the project's topics


def test_up_again_starts_nothing(running: Handle) -> None:
    before = running.pids()
    result = cli("up", *running.args)  # without --prometheus: the running one stays
    assert result.returncode == 0, result.stderr
    assert running.pids() == before
    result = cli("up", *running.up_args)
    assert result.returncode == 0, result.stderr
    assert running.pids() == before
    assert "none (all exist)" in result.stdout
    java = [line for line in processes_mentioning(str(running.run_dir)).values()
            if "kafka.Kafka" in line]  # fmt: skip
    assert len(java) == 1


def test_up_again_with_other_ports_in_the_settings_reloads_the_scrape_targets(
    running: Handle,
) -> None:
    before = running.pids()
    api_port, monitor_port = free_ports(2)
    env = dict(ENV, CHURN_API_PORT=str(api_port), CHURN_MONITOR_METRICS_PORT=str(monitor_port))
    result = cli("up", *running.up_args, env=env)
    assert result.returncode == 0, result.stderr
    assert running.pids() == before  # reloaded, not restarted
    expected = {
        "churnstream-worker": f"http://127.0.0.1:{WORKER_PORT}/metrics",
        "churnstream-api": f"http://127.0.0.1:{api_port}/metrics",
        "churnstream-monitor": f"http://127.0.0.1:{monitor_port}/metrics",
    }
    assert scrape_urls(running, expected) == expected


def test_status_reports_running(running: Handle) -> None:
    result = cli("status", *running.args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("running") == 3
    for pid in running.pids().values():
        assert str(pid) in result.stdout
    status = running.stack().status()
    assert status.all_running
    assert status["kafka"].pid == running.pids()["kafka"]
    assert status["redis"].address == f"127.0.0.1:{running.redis_port}"
    assert status["prometheus"].address == f"127.0.0.1:{running.prometheus_port}"


def test_status_env_is_evalable(running: Handle) -> None:
    # No port options: the ports recorded by `up` in the run dir are used.
    result = cli("status", "--env", "--run-dir", str(running.run_dir))
    assert result.returncode == 0, result.stderr
    expected = [
        f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{running.kafka_port}",
        f"REDIS_URL=redis://127.0.0.1:{running.redis_port}/0",
        f"PROMETHEUS_URL=http://127.0.0.1:{running.prometheus_port}",
    ]
    assert result.stdout.splitlines() == expected
    evaluated = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$OUT" && printf "%s\\n%s\\n%s\\n" "$KAFKA_BOOTSTRAP_SERVERS" "$REDIS_URL" '
            '"$PROMETHEUS_URL"',
        ],
        env={"OUT": result.stdout, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert evaluated.stdout.splitlines() == [line.split("=", 1)[1] for line in expected]


def test_down_leaves_no_process_behind(running: Handle) -> None:
    pids = running.pids()
    result = cli("down", *running.args)
    assert result.returncode == 0, result.stderr
    assert not any(is_alive(pid) for pid in pids.values())
    assert processes_mentioning(str(running.run_dir)) == {}
    assert not (running.run_dir / "kafka" / "kafka.pid").exists()
    assert not (running.run_dir / "redis" / "redis.pid").exists()
    assert not (running.run_dir / "prometheus" / "prometheus.pid").exists()
    assert cli("status", *running.args).returncode == 3
    assert cli("status", "--env", *running.args).stdout == ""
    # Again, with nothing running: a no-op.
    assert cli("down", *running.args).returncode == 0


def test_down_when_nothing_ever_ran_is_a_noop(tmp_path: Path) -> None:
    kafka, controller, redis_port = free_ports(3)
    stack = LocalStack(tmp_path / "never", kafka, controller, redis_port)
    status = stack.down()
    assert not status.all_running
    assert [service.pid for service in status.services] == [None, None]
    result = cli("down", "--run-dir", str(tmp_path / "never"))
    assert result.returncode == 0, result.stderr


def test_failed_up_stops_what_it_started(tmp_path: Path) -> None:
    """Kafka's port is taken: `up` fails clearly and does not leave Redis running."""
    run_dir = (tmp_path / "busy").resolve()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        controller, redis_port = free_ports(2)
        stack = LocalStack(run_dir, squatter.getsockname()[1], controller, redis_port)
        try:
            with pytest.raises(InfraError, match="already used by another process"):
                stack.up(timeout=60)
            assert processes_mentioning(str(run_dir)) == {}
            assert not (run_dir / "redis" / "redis.pid").exists()
        finally:
            stack.down()
            kill_leftovers(run_dir)


def test_the_compose_prometheus_config_is_valid_for_prometheus() -> None:
    """The generated file docker-compose mounts, checked by Prometheus's own promtool."""
    config = REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def first_producer_warnings(broker: KafkaBroker, transactional_id: str) -> list[str]:
    """What librdkafka logs of a producer id refused while a transactional producer made
    the moment after ``broker`` is ready initialises."""
    records = _Records()
    librdkafka = logging.getLogger(f"tests.{transactional_id}")
    librdkafka.addHandler(records)
    try:
        producer = Producer(
            {
                "bootstrap.servers": broker.address,
                "transactional.id": transactional_id,
                "logger": librdkafka,
            }
        )
        producer.init_transactions(60)
        producer.poll(0.5)  # serves the log lines queued meanwhile
        producer.flush(0)
    finally:
        librdkafka.removeHandler(records)
    return [m for m in records.messages if "GETPID" in m or "load in progress" in m]


def test_a_broker_is_ready_once_it_hands_out_producer_ids(tmp_path: Path) -> None:
    """A producer made the moment the broker is ready, fresh or restarted on its data, gets
    its producer id at the first request: librdkafka logs no ``Coordinator load in
    progress`` retry."""
    broker_port, controller_port = free_ports(2)
    broker = KafkaBroker(
        home=tmp_path / "kafka",
        port=broker_port,
        controller_port=controller_port,
        libs_dir=Settings().kafka_libs_dir,
        heap="384m",
    )
    broker.prepare()
    pid = broker.start()
    try:
        broker.wait_ready(pid, timeout=120)
        assert first_producer_warnings(broker, "first-producer") == []
        stop_pid(pid, broker.markers, timeout=30)
        pid = broker.start()  # on the same data: the readiness probe has run before
        broker.wait_ready(pid, timeout=120)
        assert first_producer_warnings(broker, "first-producer-after-a-restart") == []
    finally:
        stop_pid(pid, broker.markers, timeout=30)
