"""`churnstream infra up --redis-cluster`: three Redis masters joined into one cluster, as
plain processes under the run dir; `up` again starts nothing, `status --env` points
`REDIS_URL` at the cluster, and `down` leaves no process behind. The CLI runs in
subprocesses, as a user runs it; which processes exist is checked by reading /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnstream.infra.processes import is_alive
from churnstream.infra.redis_cluster import cluster_nodes, cluster_ok, free_cluster_port
from core.redis_client import client_is_cluster, connect_redis
from core.settings import Settings
from tests.integration.test_infra import ENV, cli
from tests.support import free_ports, kill_leftovers, processes_mentioning

pytestmark = pytest.mark.integration


def test_up_redis_cluster_is_idempotent_points_the_env_at_it_and_down_stops_it(
    tmp_path: Path,
) -> None:
    run_dir = (tmp_path / "run").resolve()
    kafka, controller, redis_port = free_ports(3)
    first = free_cluster_port()
    env = dict(ENV, CHURN_REDIS_CLUSTER_PORT=str(first))
    args = ["--run-dir", str(run_dir), "--kafka-port", str(kafka),
            "--kafka-controller-port", str(controller), "--redis-port", str(redis_port)]  # fmt: skip
    nodes = cluster_nodes(run_dir, first)
    try:
        result = cli("up", *args, "--redis-cluster", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert cluster_ok(nodes)
        pids = [int(node.pid_file.read_text()) for node in nodes]
        assert all(is_alive(pid) for pid in pids)

        again = cli("up", *args, "--redis-cluster", env=env)
        assert again.returncode == 0, again.stderr
        assert [int(node.pid_file.read_text()) for node in nodes] == pids

        status = cli("status", "--env", "--run-dir", str(run_dir), env=env)
        assert status.returncode == 0, status.stderr
        assert f"REDIS_URL=redis://127.0.0.1:{first}/0" in status.stdout.splitlines()
        client = connect_redis(Settings(redis_url=f"redis://127.0.0.1:{first}/0"))
        assert client_is_cluster(client)
        keys = [f"infra-test:{{{i}}}" for i in range(20)]  # spread over the three masters
        for key in keys:
            client.set(key, key)
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
        client.close()

        down = cli("down", *args, env=env)
        assert down.returncode == 0, down.stderr
        assert not any(is_alive(pid) for pid in pids)
        assert processes_mentioning(str(run_dir)) == {}
        assert cli("status", *args, env=env).returncode == 3
    finally:
        cli("down", *args, env=env)
        kill_leftovers(run_dir)
