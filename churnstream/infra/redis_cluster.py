"""A local Redis Cluster of three masters (Debian's ``redis-server``), for local use and tests.

Each master is a :class:`ClusterNode`: a :class:`RedisServer` started with
``--cluster-enabled yes`` on its own port (the cluster bus on port + 10000), durable (AOF),
under ``<run_dir>/redis-cluster/<port>/``, where Redis also keeps its ``nodes.conf``.
The first ``up`` joins them with ``redis-cli --cluster create`` (no replicas); later starts
find each other through ``nodes.conf`` and need no new join. :func:`form_cluster` is
idempotent and waits until every node reports ``cluster_state:ok``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis

from churnstream.infra.processes import InfraError, read_pid_file, stop_pid
from churnstream.infra.redis_server import HOST, RedisServer

log = logging.getLogger(__name__)

MASTERS = 3
BUS_PORT_OFFSET = 10000


@dataclass(frozen=True)
class ClusterNode(RedisServer):
    """One master of the local cluster (its port also names its home directory)."""

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"redis-cluster-{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.port + BUS_PORT_OFFSET)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            *super().argv(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout",
            "2000",
            "--maxmemory",
            "0",
        ]


def cluster_nodes(run_dir: Path, first_port: int) -> tuple[ClusterNode, ...]:
    """The masters of the local cluster whose first port is ``first_port``."""
    home = run_dir / "redis-cluster"
    return tuple(
        ClusterNode(home=home / str(port), port=port)
        for port in range(first_port, first_port + MASTERS)
    )


def cluster_url(first_port: int) -> str:
    """``REDIS_URL`` for the local cluster: its first node (clients discover the others)."""
    return f"redis://{HOST}:{first_port}/0"


def _cluster_info(port: int) -> dict[str, str]:
    client = redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        info = cast(dict[str, object], client.cluster("INFO"))
    finally:
        client.close()
    return {str(key): str(value) for key, value in info.items()}


def cluster_ok(nodes: Sequence[ClusterNode]) -> bool:
    """Whether every node answers and reports ``cluster_state:ok`` with all slots served."""
    try:
        infos = [_cluster_info(node.port) for node in nodes]
    except redis.RedisError:
        return False
    return all(
        info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"
        for info in infos
    )


def form_cluster(nodes: Sequence[ClusterNode], timeout: float) -> None:
    """Join the running ``nodes`` into one cluster unless they already are one, and wait
    until every node reports ``cluster_state:ok``. Raises :class:`InfraError` otherwise."""
    deadline = time.monotonic() + timeout
    if not cluster_ok(nodes):
        assigned = [
            int(_cluster_info(node.port).get("cluster_slots_assigned", "0")) for node in nodes
        ]
        if not any(assigned):
            _create(nodes)
    while time.monotonic() < deadline:
        if cluster_ok(nodes):
            log.info("redis cluster ok nodes=%s", ",".join(node.address for node in nodes))
            return
        time.sleep(0.2)
    states = []
    for node in nodes:
        try:
            states.append(f"{node.address}: {_cluster_info(node.port).get('cluster_state')}")
        except redis.RedisError as exc:
            states.append(f"{node.address}: {exc}")
    raise InfraError(
        f"the Redis Cluster did not reach cluster_state:ok within {timeout:.0f}s "
        f"({'; '.join(states)}); logs: {', '.join(str(node.log_file) for node in nodes)}"
    )


def _create(nodes: Sequence[ClusterNode]) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise InfraError("redis-cli is not installed (apt-get install redis-tools)")
    argv = [cli, "--cluster", "create", *(node.address for node in nodes)]
    argv += ["--cluster-replicas", "0", "--cluster-yes"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise InfraError(
            f"redis-cli --cluster create failed (exit {done.returncode})",
            (done.stdout + done.stderr)[-2000:],
        )
    log.info("redis cluster created nodes=%s", ",".join(node.address for node in nodes))


def start_local_cluster(run_dir: Path, first_port: int, timeout: float) -> tuple[ClusterNode, ...]:
    """Start the masters under ``run_dir`` and join them (for tests and benchmarks that
    need their own cluster); stop them with :func:`stop_local_cluster`."""
    nodes = cluster_nodes(run_dir, first_port)
    pids = []
    try:
        for node in nodes:
            node.prepare()
            pids.append(node.start())
        for node, pid in zip(nodes, pids, strict=True):
            node.wait_ready(pid, timeout)
        form_cluster(nodes, timeout)
    except BaseException:
        stop_local_cluster(nodes)
        raise
    return nodes


def stop_local_cluster(nodes: Sequence[ClusterNode], timeout: float = 10.0) -> None:
    """Stop the masters :func:`start_local_cluster` started (SIGTERM, then SIGKILL)."""
    for node in nodes:
        pid = read_pid_file(node.pid_file)
        if pid is not None:
            stop_pid(pid, node.markers, timeout=timeout)
        node.pid_file.unlink(missing_ok=True)


def free_cluster_port(masters: int = 3) -> int:
    """A first port for a local Redis Cluster: ``masters`` consecutive ports free, and
    their cluster bus ports (+10000) too."""
    for _ in range(200):
        first = _free_port()
        if first + masters + 10000 > 65535:
            continue
        wanted = [first + i for i in range(masters)]
        wanted += [port + 10000 for port in wanted]
        try:
            with ExitStack() as stack:
                for port in wanted:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports for a Redis Cluster")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
