"""Shared fixtures: a real Kafka broker and a real Redis server for integration tests.

Where they come from, in order of preference:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set (e.g. after
   ``eval "$(churnstream infra status --env)"``, or services a CI provides);
2. testcontainers, when a Docker engine answers;
3. otherwise local processes started by the suite (``churnstream.infra.LocalStack``: a
   KRaft broker from Maven Central jars and ``redis-server``), stopped at the end.

Every test gets its own topic prefix and Redis key prefix (see :func:`settings`), so tests
never see each other's data and can run against a developer's long-lived stack.

**Redis Cluster.** Tests marked ``both_redis`` run twice: against the single Redis server
above and against a Redis Cluster of three masters (``redis_topology`` is ``"single"`` or
``"cluster"``). The cluster is ``REDIS_CLUSTER_URL`` when set (any node), else three
``redis-server`` processes started once for the session by ``churnstream.infra``'s
cluster code and stopped at the end.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import redis

from core.producer import EventProducer
from core.redis_client import connect_redis
from core.settings import Settings
from tests.support import delete_test_topics, free_ports, isolated_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    kafka_bootstrap_servers: str
    redis_url: str
    provisioned_by: str


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no client library, no socket, or no engine behind it
        return False


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Addresses of a real Kafka broker and a real Redis server for the whole session."""
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_redis = os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        yield Services(env_kafka, env_redis, "environment")
        return
    if _docker_available():
        yield from _containers(env_kafka, env_redis)
        return
    yield from _local_processes(tmp_path_factory, env_kafka, env_redis)


def _containers(env_kafka: str | None, env_redis: str | None) -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    kafka = None if env_kafka else KafkaContainer().with_kraft()
    redis_container = None if env_redis else RedisContainer("redis:7-alpine")
    try:
        if kafka is not None:
            kafka.start()
        if redis_container is not None:
            redis_container.start()
        bootstrap = env_kafka or kafka.get_bootstrap_server()  # type: ignore[union-attr]
        redis_url = env_redis or (
            f"redis://{redis_container.get_container_host_ip()}:"  # type: ignore[union-attr]
            f"{redis_container.get_exposed_port(6379)}/0"  # type: ignore[union-attr]
        )
        yield Services(bootstrap, redis_url, "testcontainers")
    finally:
        for container in (kafka, redis_container):
            if container is not None:
                container.stop()


def _local_processes(
    tmp_path_factory: pytest.TempPathFactory, env_kafka: str | None, env_redis: str | None
) -> Iterator[Services]:
    from churnstream.infra import LocalStack

    defaults = Settings()
    kafka_port, controller_port, redis_port = free_ports(3)
    stack = LocalStack(
        run_dir=tmp_path_factory.mktemp("stack"),
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=redis_port,
        kafka_libs_dir=defaults.kafka_libs_dir,
        kafka_heap="512m",
    )
    stack.up(timeout=180)
    try:
        yield Services(
            env_kafka or stack.bootstrap_servers,
            env_redis or stack.redis_url,
            "local processes",
        )
    finally:
        stack.down()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_redis: run the test on a single Redis server and on a Redis Cluster"
    )
    config.addinivalue_line(
        "markers", "single_redis: in a both_redis module, run this test on the single server only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("both_redis")
    if (
        marked
        and not metafunc.definition.get_closest_marker("single_redis")
        and ("redis_topology" in metafunc.fixturenames)
    ):
        metafunc.parametrize("redis_topology", ["single", "cluster"], indirect=True)


@dataclass(frozen=True)
class ClusterService:
    url: str
    ports: tuple[int, ...]  # of the masters (empty when the cluster is not ours)
    run_dir: Path | None


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterService]:
    """A Redis Cluster of three masters for the session (``REDIS_CLUSTER_URL``, else
    local processes started here, with AOF, stopped at the end)."""
    env_url = os.environ.get("REDIS_CLUSTER_URL")
    if env_url:
        yield ClusterService(env_url, (), None)
        return
    from churnstream.infra.redis_cluster import (
        free_cluster_port,
        start_local_cluster,
        stop_local_cluster,
    )

    run_dir = tmp_path_factory.mktemp("redis-cluster")
    nodes = start_local_cluster(run_dir, free_cluster_port(), timeout=60)
    try:
        yield ClusterService(nodes[0].url, tuple(n.port for n in nodes), run_dir)
    finally:
        stop_local_cluster(nodes)


@pytest.fixture
def redis_topology(request: pytest.FixtureRequest) -> str:
    """``"single"``, or ``"cluster"`` for the cluster run of a ``both_redis`` test."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    return services.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    return services.redis_url


@pytest.fixture
def test_id() -> str:
    """A short id unique to this test, used to prefix its topics and Redis keys."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(
    services: Services,
    test_id: str,
    tmp_path: Path,
    redis_topology: str,
    request: pytest.FixtureRequest,
) -> Iterator[Settings]:
    """Settings pointing at the session's services, isolated to this test (Redis: the
    cluster in the cluster run of a ``both_redis`` test). The test's topics are deleted
    afterwards."""
    redis_url = services.redis_url
    if redis_topology == "cluster":
        redis_url = cast(ClusterService, request.getfixturevalue("redis_cluster")).url
    yield isolated_settings(services.kafka_bootstrap_servers, redis_url, test_id, tmp_path)
    delete_test_topics(services.kafka_bootstrap_servers, test_id)


@pytest.fixture
def producer(settings: Settings) -> Iterator[EventProducer]:
    """An event producer to this test's topics, closed afterwards."""
    with EventProducer(settings) as p:
        yield p


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client; keys under this test's prefix are deleted afterwards."""
    client = connect_redis(settings)
    yield client
    keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point CLI commands (which read settings from the environment) at this test's settings
    (every setting in its variable)."""
    from core.settings import get_settings
    from core.settings_env import settings_variables

    for variable, value in settings_variables(settings).items():
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
