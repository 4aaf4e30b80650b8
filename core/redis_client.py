"""The one way churnstream opens a Redis connection (URL, password, timeouts, cluster).

``REDIS_URL`` may name a single server or any node of a Redis Cluster. With
``CHURN_REDIS_CLUSTER=auto`` (the default) the server is asked once per process and URL
(``INFO cluster``) and a cluster gets redis-py's :class:`redis.cluster.RedisCluster`,
which discovers the other nodes and routes each command to the node owning its slot.
``yes`` or ``no`` skip the question (when the server does not answer the question, a
single-server client is returned and the question is asked again on the next connection;
set ``yes`` on a cluster whose clients may start before it).

Both clients answer the same commands; what differs on a cluster is that a transaction, a
Lua script or a multi-key command must name keys of one hash slot only. The key layout
(:mod:`core.keys`) keeps everything that must change together under one hash tag, and
code that reads across tags uses non-transactional pipelines (:func:`get_many`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from core.settings import Settings

log = logging.getLogger(__name__)


def _redacted(url: str) -> str:
    """``url`` without its password."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
"""What a failed Redis call raises: any :class:`redis.RedisError`, and on a cluster also
:class:`redis.exceptions.RedisClusterException` (e.g. when no node answers)."""


def _options(settings: Settings, decode_responses: bool) -> dict[str, Any]:
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "health_check_interval": 30,
    }
    if password is not None:
        options["password"] = password
    return options


@lru_cache(maxsize=16)
def _cluster_enabled(url: str, password: str | None) -> bool:
    """Whether the server at ``url`` runs in cluster mode (one ``INFO cluster``)."""
    client = redis.Redis.from_url(url, password=password, socket_connect_timeout=5)
    try:
        info = client.info("cluster")
    finally:
        client.close()
    return bool(info.get("cluster_enabled"))


def is_cluster(settings: Settings) -> bool:
    """Whether ``REDIS_URL`` names a Redis Cluster node (``CHURN_REDIS_CLUSTER``)."""
    if settings.redis_cluster != "auto":
        return settings.redis_cluster == "yes"
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    try:
        return _cluster_enabled(settings.redis_url, password)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Not remembered: the next connection asks again.
        log.warning(
            "redis does not answer; assuming a single server url=%s error=%r",
            _redacted(settings.redis_url),
            exc,
        )
        return False


def connect_redis(settings: Settings, *, decode_responses: bool = False) -> redis.Redis:
    """A client for ``REDIS_URL``; ``REDIS_PASSWORD`` applies when the URL carries none.

    On a cluster the client is a :class:`redis.cluster.RedisCluster` (typed as
    :class:`redis.Redis`: it has the same command methods)."""
    options = _options(settings, decode_responses)
    if is_cluster(settings):
        url = settings.redis_url.rsplit("/", 1)[0] if settings.redis_url.count("/") > 2 else None
        cluster = RedisCluster.from_url(url or settings.redis_url, **options)
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(settings.redis_url, **options)


def client_is_cluster(client: object) -> bool:
    """Whether ``client`` (from :func:`connect_redis`) talks to a cluster."""
    return isinstance(client, RedisCluster)


def get_many(client: redis.Redis, keys: Sequence[str]) -> list[bytes | None]:
    """``GET`` of each key, in order, in one round trip per node (keys of any slots)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    return cast(list[bytes | None], pipe.execute())
