"""The API benchmark's at-risk phase: ``GET /customers/at-risk?band=high&limit=50`` on a
single Redis server and on a Redis Cluster, with the same customers loaded in each.

``api_at_risk_p99_ms`` / ``api_at_risk_cluster_p99_ms`` (and the p50s): the app
(``serving.main.create_app``) driven in-process through httpx's ASGI transport, one request
at a time, after a warm-up. The route merges every shard's top of the ``high`` band
(:mod:`core.leaderboard`), so it costs O(shards x (log n + limit)): the figure should not
grow with the number of customers. Details: the list without a band, and a deep page
(``offset=5000``).

The cluster is ``REDIS_CLUSTER_URL`` when set (any node), else three local masters started
for the phase (``churnstream.infra.redis_cluster``) under a temporary directory and stopped
at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.api_load import TilePool, delete_prefix, load_customers
from bench.api_measure import app_of, lifespan_of, redis_state
from bench.common import percentiles_ms
from core.keys import Keys
from core.model import LinearModel
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings

log = logging.getLogger("bench.api")

AT_RISK_PATHS = {
    "high_50": "/customers/at-risk?band=high&limit=50",
    "all_50": "/customers/at-risk?limit=50",
    "high_50_offset_5000": "/customers/at-risk?band=high&limit=50&offset=5000",
}
HEADLINE = "high_50"


async def _requests(app: Any, path: str, requests: int, warmup: int) -> list[float]:
    import httpx

    samples: list[float] = []
    async with lifespan_of(app) as asgi:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(warmup):
                response = await client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
            for _ in range(requests):
                start = time.perf_counter()
                await client.get(path)
                samples.append(time.perf_counter() - start)
    return samples


def measure_at_risk(settings: Settings, requests: int, warmup: int) -> dict[str, Any]:
    """Percentiles of each of :data:`AT_RISK_PATHS`, and the first page's size and total."""
    quiet = logging.getLogger("httpx")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        found: dict[str, Any] = {}
        for name, path in AT_RISK_PATHS.items():
            samples = asyncio.run(_requests(app_of(settings), path, requests, warmup))
            found[name] = {"path": path, "requests": len(samples), **percentiles_ms(samples)}
        return found
    finally:
        quiet.setLevel(level)


@contextlib.contextmanager
def cluster_url() -> Iterator[str]:
    """``REDIS_CLUSTER_URL``, or a local three-master cluster for the block."""
    env_url = os.environ.get("REDIS_CLUSTER_URL")
    if env_url:
        yield env_url
        return
    from churnstream.infra.redis_cluster import (
        free_cluster_port,
        start_local_cluster,
        stop_local_cluster,
    )

    home = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    nodes = start_local_cluster(home, free_cluster_port(), timeout=60)
    try:
        yield nodes[0].url
    finally:
        stop_local_cluster(nodes)
        shutil.rmtree(home, ignore_errors=True)


def cluster_phase(
    settings: Settings,
    n: int,
    pool: TilePool,
    model: LinearModel,
    rng: np.random.Generator,
    requests: int,
    warmup: int,
) -> dict[str, Any]:
    """Load the same ``n`` customers on a Redis Cluster, measure :func:`measure_at_risk`
    there, delete them again."""
    models = Path(tempfile.mkdtemp(prefix="bench-cluster-models-"))
    with cluster_url() as url, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, models, True)
        on_cluster = settings.model_copy(update={"redis_url": url, "model_dir": models})
        client = connect_redis(on_cluster)
        keys = Keys(on_cluster.redis_key_prefix, on_cluster.topic_partitions)
        delete_prefix(client, keys)
        try:
            registry = ModelRegistry(on_cluster, client)
            registry.promote(registry.register(model, metrics={}, training={}).version)
            report = load_customers(client, keys, n, pool, model, time.time(), rng)
            log.info("cluster: loaded %d customers in %.1fs", n, report.seconds)
            details: dict[str, Any] = {
                "redis_url": url,
                "load_seconds": round(report.seconds, 1),
                "redis_after_load": redis_state(client),
            }
            details["at_risk"] = measure_at_risk(on_cluster, requests, warmup)
            return details
        finally:
            delete_prefix(client, keys, known=n)
            client.close()
