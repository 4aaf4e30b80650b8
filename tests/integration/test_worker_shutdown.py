"""`churnstream worker` exits within 10 s of SIGTERM when Kafka, Redis or both are gone.

Each test runs the worker (both engines) as a subprocess against services the test starts
itself and kills mid-run: a Kafka broker of this module (restarted for each test that
kills it), and a Redis server of each test. The session's shared services are never
stopped. (That such an exit loses and repeats nothing is what the fault suite checks:
it is no different from a crash.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from churnstream.infra.kafka import KafkaBroker
from churnstream.infra.processes import is_alive, read_pid_file, stop_pid, stop_process
from churnstream.infra.redis_server import RedisServer
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate
from tests.integration.test_worker import produce
from tests.support import free_ports
from tests.support_worker import WorkerProcess, started_worker, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
EXIT_WITHIN_SECONDS = 10.0


def _kill(service: KafkaBroker | RedisServer) -> None:
    """SIGKILL, as when the host or container of the service dies."""
    pid = read_pid_file(service.pid_file)
    if pid is not None and is_alive(pid):
        stop_pid(pid, service.markers, timeout=0.0)


def _running(service: KafkaBroker | RedisServer, timeout: float) -> None:
    pid = read_pid_file(service.pid_file)
    if pid is None or not is_alive(pid) or not service.answers():
        service.wait_ready(service.start(), timeout=timeout)


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of this module only: tests kill it, the next test starts it again."""
    broker_port, controller_port = free_ports(2)
    broker = KafkaBroker(
        home=tmp_path_factory.mktemp("kafka"),
        port=broker_port,
        controller_port=controller_port,
        libs_dir=Settings().kafka_libs_dir,
        heap="384m",
    )
    broker.prepare()
    yield broker
    pid = read_pid_file(broker.pid_file)
    if pid is not None:
        stop_pid(pid, broker.markers, timeout=10)


def _sigterm_exit_seconds(worker: WorkerProcess) -> float:
    """Send SIGTERM; the seconds until the process exited (inf: killed after 60 s)."""
    assert worker.process is not None
    sent = time.monotonic()
    code = stop_process(worker.process, timeout=60)
    return float("inf") if code == -signal.SIGKILL else time.monotonic() - sent


@pytest.mark.parametrize("engine", ["batch", "faust"])
@pytest.mark.parametrize("gone", ["kafka", "redis", "both"])
def test_sigterm_stops_the_worker_within_10s_with_a_service_gone(
    settings: Settings,
    own_kafka: KafkaBroker,
    own_redis: RedisServer,
    tmp_path: Path,
    gone: str,
    engine: str,
) -> None:
    kafka_killed = gone in ("kafka", "both")
    if kafka_killed:
        _running(own_kafka, timeout=120)
    worker_settings = settings.model_copy(
        update={
            "kafka_bootstrap_servers": (
                own_kafka.address if kafka_killed else settings.kafka_bootstrap_servers
            ),
            "redis_url": f"redis://{own_redis.address}/0",
            "worker_engine": engine,
            "rescore_after_seconds": 1,
            "rescore_tick_seconds": 0.5,
        }
    )
    events = list(simulate(SimulationConfig(customers=20, days=6, seed=52, start=START)))
    worker = started_worker(worker_settings, tmp_path / "worker.log")
    try:
        produce(worker_settings, events[: len(events) // 2])
        wait_drained(worker_settings)
        if gone in ("redis", "both"):
            _kill(own_redis)
        if gone == "redis":  # new events arrive: a batch fails and retries its commit
            produce(worker_settings, events[len(events) // 2 :])
        if kafka_killed:
            _kill(own_kafka)
        time.sleep(3)  # the worker notices: retries, reconnects, timers fail
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()

        seconds = _sigterm_exit_seconds(worker)
        assert seconds <= EXIT_WITHIN_SECONDS, (
            f"exited {seconds:.1f}s after SIGTERM\n{worker.log_tail()}"
        )
    finally:
        worker.kill()
