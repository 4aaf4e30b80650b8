"""The local stack: one Redis server and one Kafka broker (and, on request, a Prometheus
scraping the churnstream processes), as plain processes under a run dir.

``LocalStack(...).up()`` starts what is not already running and waits until both answer;
``down()`` stops exactly the processes ``up`` started (found by pid file, verified by command
line) and removes their pid files. Both are idempotent and serialised by a lock file, so two
commands on the same run dir never start a second copy. Prometheus is started only by a
stack built with ``with_prometheus=True``; once running it is part of the stack (shown by
``status``, kept by a later plain ``up``) until ``down`` stops it with the rest. A local
Redis Cluster (``with_redis_cluster=True``: three masters, see
churnstream.infra.redis_cluster) follows the same rule.

Layout of ``run_dir``::

    stack.json   ports of the running stack (written by up, removed by down)
    .lock        serialises up/down
    kafka/       see churnstream.infra.kafka
    redis/       see churnstream.infra.redis_server
    prometheus/  see churnstream.infra.prometheus
    redis-cluster/<port>/  see churnstream.infra.redis_cluster
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from churnstream.infra.kafka import KafkaBroker
from churnstream.infra.processes import (
    InfraError,
    find_pids,
    is_ours,
    port_open,
    read_pid_file,
    stop_pid,
)
from churnstream.infra.prometheus import PrometheusServer, ScrapeTarget
from churnstream.infra.redis_cluster import ClusterNode, cluster_nodes, cluster_url, form_cluster
from churnstream.infra.redis_server import RedisServer
from churnstream.infra.service import HOST

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["InfraError", "LocalStack", "ServiceStatus", "StackStatus"]

log = logging.getLogger(__name__)


# The fields of a LocalStack that are settings of the same name.
_FROM_SETTINGS = (
    "run_dir", "kafka_port", "kafka_controller_port", "redis_port", "kafka_libs_dir",
    "kafka_heap", "prometheus_port", "redis_cluster_port",
)  # fmt: skip


class Service(Protocol):
    """What the stack needs from a service (KafkaBroker, RedisServer, PrometheusServer)."""

    @property
    def name(self) -> str: ...
    @property
    def pid_file(self) -> Path: ...
    @property
    def log_file(self) -> Path: ...
    @property
    def address(self) -> str: ...
    @property
    def ports(self) -> tuple[int, ...]: ...
    @property
    def markers(self) -> tuple[str, ...]: ...
    def prepare(self) -> None: ...
    def start(self) -> int: ...
    def answers(self, timeout: float = ...) -> bool: ...
    def wait_ready(self, pid: int, timeout: float) -> None: ...


@dataclass(frozen=True)
class ServiceStatus:
    """One service: running means its process is ours and it answers on ``address``."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str


@dataclass(frozen=True)
class StackStatus:
    """The services of a stack, in start order (redis, kafka, then prometheus if any)."""

    services: tuple[ServiceStatus, ...]

    @property
    def all_running(self) -> bool:
        return all(service.running for service in self.services)

    def __getitem__(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def _default_libs_dir() -> Path:
    return Path.home() / ".cache" / "churnstream" / "kafka-3.9.1" / "libs"


@dataclass
class LocalStack:
    """Redis + Kafka for development and tests, kept under ``run_dir`` (made absolute).

    With ``with_prometheus``, ``up`` also starts a Prometheus on ``prometheus_port`` that
    scrapes ``scrape_targets`` every ``scrape_interval_seconds``.
    """

    run_dir: Path
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    redis_port: int = 16379
    kafka_libs_dir: Path = field(default_factory=_default_libs_dir)
    kafka_heap: str = "512m"
    with_prometheus: bool = False
    prometheus_port: int = 19090
    scrape_targets: tuple[ScrapeTarget, ...] = ()
    scrape_interval_seconds: float = 5.0
    with_redis_cluster: bool = False
    redis_cluster_port: int = 17000

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).expanduser().resolve()
        self.kafka_libs_dir = Path(self.kafka_libs_dir).expanduser().resolve()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        api_port: int | None = None,
        *,
        with_prometheus: bool = False,
        with_redis_cluster: bool = False,
    ) -> LocalStack:
        """Build from :class:`core.settings.Settings` (its run_dir, ports, libs dir, heap).

        Prometheus scrapes the worker and the monitor at their ports in ``settings`` and
        the API at ``api_port`` (``CHURN_API_PORT``; the API's default when None).
        """
        from churnstream.infra.prometheus import targets_from_settings

        if api_port is None:
            from serving.config import ApiSettings

            api_port = int(ApiSettings.model_fields["port"].default)
        return cls(
            **{name: getattr(settings, name) for name in _FROM_SETTINGS},
            with_prometheus=with_prometheus,
            scrape_targets=targets_from_settings(settings, api_port),
            with_redis_cluster=with_redis_cluster,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"

    @property
    def redis_cluster_url(self) -> str:
        """``REDIS_URL`` of the local Redis Cluster (any node would do; this is the first)."""
        return cluster_url(self.redis_cluster_port)

    @property
    def redis_cluster_nodes(self) -> tuple[ClusterNode, ...]:
        return cluster_nodes(self.run_dir, self.redis_cluster_port)

    def redis_cluster_running(self) -> bool:
        """Whether any node of the local Redis Cluster is running (started by an ``up``)."""
        return any(self._pids(node) for node in self.redis_cluster_nodes)

    @property
    def redis(self) -> RedisServer:
        return RedisServer(home=self.run_dir / "redis", port=self.redis_port)

    @property
    def kafka(self) -> KafkaBroker:
        return KafkaBroker(
            home=self.run_dir / "kafka",
            port=self.kafka_port,
            controller_port=self.kafka_controller_port,
            libs_dir=self.kafka_libs_dir,
            heap=self.kafka_heap,
        )

    @property
    def prometheus(self) -> PrometheusServer:
        return PrometheusServer(
            home=self.run_dir / "prometheus",
            port=self.prometheus_port,
            targets=self.scrape_targets,
            scrape_interval_seconds=self.scrape_interval_seconds,
        )

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    def services(self) -> tuple[Service, ...]:
        """What ``up`` starts and ``status`` shows: Prometheus and the Redis Cluster when
        asked for or running."""
        services: tuple[Service, ...] = (self.redis, self.kafka)
        if self.with_prometheus or self._pids(self.prometheus):
            services += (self.prometheus,)
        if self.with_redis_cluster or self.redis_cluster_running():
            services += self.redis_cluster_nodes
        return services

    # --- recorded ports -----------------------------------------------------------------

    @property
    def _record_file(self) -> Path:
        return self.run_dir / "stack.json"

    def _ports(self) -> dict[str, int]:
        ports = {
            "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "redis_port": self.redis_port,
        }
        if self.with_prometheus:
            ports["prometheus_port"] = self.prometheus_port
        if self.with_redis_cluster:
            ports["redis_cluster_port"] = self.redis_cluster_port
        return ports

    @staticmethod
    def recorded_ports(run_dir: Path) -> dict[str, int] | None:
        """The ports the stack in ``run_dir`` was started with (None when not started)."""
        try:
            data = json.loads((Path(run_dir).expanduser() / "stack.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return {key: int(value) for key, value in data.items() if key.endswith("_port")}

    # --- operations -----------------------------------------------------------------------

    def status(self) -> StackStatus:
        """Whether each service's process is ours, alive and answering."""
        return StackStatus(tuple(self._status(service) for service in self.services()))

    def up(self, timeout: float = 120.0) -> StackStatus:
        """Start whatever is not running and wait until both services answer.

        ``timeout`` covers waiting for readiness, not the one-time download of the Kafka
        jars. Raises :class:`InfraError` (with the failing service's log tail) when a service
        does not come up; processes this call started are then stopped again.
        """
        started_at = time.monotonic()
        with self._locked():
            self._check_same_ports()
            started: list[tuple[Service, int]] = []
            services = self.services()
            try:
                waits = [(service, self._start_if_needed(service, started)) for service in services]
                deadline = time.monotonic() + timeout
                for service, pid in waits:
                    service.wait_ready(pid, max(1.0, deadline - time.monotonic()))
                nodes = [s for s in services if isinstance(s, ClusterNode)]
                if nodes:
                    form_cluster(nodes, max(5.0, deadline - time.monotonic()))
            except BaseException:
                for service, pid in reversed(started):
                    with contextlib.suppress(InfraError):
                        stop_pid(pid, service.markers, timeout=10.0)
                    service.pid_file.unlink(missing_ok=True)
                raise
            ports = self._ports()
            if any(service.name == "prometheus" for service in services):
                ports["prometheus_port"] = self.prometheus_port
            if any(isinstance(service, ClusterNode) for service in services):
                ports["redis_cluster_port"] = self.redis_cluster_port
            self._record_file.write_text(json.dumps(ports) + "\n")
        status = self.status()
        log.info(
            "stack up run_dir=%s started=%s elapsed=%.1fs",
            self.run_dir,
            ",".join(service.name for service, _ in started) or "none",
            time.monotonic() - started_at,
        )
        return status

    def down(self, timeout: float = 30.0) -> StackStatus:
        """Stop the processes ``up`` started (SIGTERM, then SIGKILL after ``timeout``)."""
        if not self.run_dir.exists():
            return self.status()
        with self._locked():
            for service in reversed(self.services()):
                for pid in self._pids(service):
                    if stop_pid(pid, service.markers, timeout=timeout):
                        log.info("%s stopped pid=%d", service.name, pid)
                service.pid_file.unlink(missing_ok=True)
            self._record_file.unlink(missing_ok=True)
        return self.status()

    # --- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _pids(self, service: Service) -> list[int]:
        """Our live processes for ``service``: the recorded pid, else a scan of /proc."""
        pid = read_pid_file(service.pid_file)
        if is_ours(pid, service.markers):
            assert pid is not None
            return [pid]
        return find_pids(service.markers)

    def _status(self, service: Service) -> ServiceStatus:
        pids = self._pids(service)
        pid = pids[0] if pids else None
        if pid is None:
            busy = [port for port in service.ports if port_open(HOST, port)]
            if busy:
                detail = f"port {busy[0]} is used by another process"
            elif service.pid_file.exists():
                detail = "exited (stale pid file)"
            else:
                detail = "stopped"
            return ServiceStatus(service.name, False, None, service.address, detail)
        if service.answers():
            return ServiceStatus(service.name, True, pid, service.address, "ready")
        detail = f"process alive but not answering on {service.address}"
        return ServiceStatus(service.name, False, pid, service.address, detail)

    def _check_same_ports(self) -> None:
        recorded = self.recorded_ports(self.run_dir)
        wanted = self._ports()
        if recorded is None or all(
            recorded.get(key, value) == value for key, value in wanted.items()
        ):
            return
        if any(self._pids(service) for service in self.services()):
            raise InfraError(
                f"the stack in {self.run_dir} is running with other ports "
                f"({', '.join(f'{key}={value}' for key, value in recorded.items())}); "
                "use the same ports, or stop it first with `churnstream infra down`"
            )

    def _start_if_needed(self, service: Service, started: list[tuple[Service, int]]) -> int:
        """The pid to wait for: the running one, or a freshly started process."""
        pids = self._pids(service)
        if pids:
            log.info("%s already running pid=%d", service.name, pids[0])
            if isinstance(service, PrometheusServer) and self.with_prometheus:
                service.refresh(pids[0])  # the settings may have moved a scrape target
            return pids[0]
        service.pid_file.unlink(missing_ok=True)  # stale
        for port in service.ports:
            if port_open(HOST, port):
                raise InfraError(
                    f"cannot start {service.name}: port {port} is already used by another "
                    "process; choose other ports (see `churnstream infra up --help`)"
                )
        service.prepare()
        pid = service.start()
        started.append((service, pid))
        log.info("%s started pid=%d address=%s", service.name, pid, service.address)
        return pid
