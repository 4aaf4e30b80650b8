"""API benchmark: ``GET /customers/{id}/risk`` with a million customers' state in Redis.

Every figure is measured against the real Redis server of :func:`bench.common.services`,
under an isolated key prefix (``benchapi<N>``) that is deleted again at the end (UNLINK
by name, then SCAN + UNLINK for anything else), even when a phase fails; when the load
grew Redis's append-only file, a ``BGREWRITEAOF`` gives the disk space back (automatic
AOF rewrites are suspended meanwhile: see :func:`suspend_aof_rewrites`). The phases:

1. **Load** ``customers`` customers' state, in the store's own format: each customer gets
   20-30 day tiles (a uniform number) spread over the 90 days before their last active day
   (0-29 days ago, mostly recent), plus the scalars field and the latest-score fields,
   and a member in its shard's ``risk``, ``risk:<band>`` and ``scored_at`` sorted sets
   (layout in :mod:`core.keys`). Tiles come from a pool of
   :data:`POOL_TILES` distinct tiles built with :class:`core.aggregates.CustomerAggregates`
   (``set_tile``) and encoded with :func:`core.customer_encoding.encode_tile`; each tile holds 1-80
   events (mean ~10) split over the event types with consistent counters (sessions,
   seconds, cents) and one 64-bit hash per event. Scalars go through
   :func:`core.customer_encoding.encode_scalars` and scores through :func:`core.store.score_fields`.
   Commands are written as raw RESP in chunks of :data:`CHUNK` customers (one ``HSET``
   each, one ``ZADD`` per sorted set per chunk) on one connection per Redis node, no
   transactions; a
   sender thread writes a chunk while the next one is built. A few customers are read
   back with :meth:`FeatureStore.load_customer` and compared with the aggregates they were
   built from. The number of customers is capped so the estimated Redis memory stays under
   ``memory_budget_gib`` and half of the machine's available memory. Measurements start
   once no AOF rewrite runs.
2. A model (the worker benchmark's trained ``LinearModel``) is registered and promoted
   under a temporary ``CHURN_MODEL_DIR``.
3. ``api_inprocess_p50_ms`` / ``api_inprocess_p99_ms`` — ``serving.main.create_app(settings)``
   driven in-process by ``httpx.AsyncClient(transport=httpx.ASGITransport(app))`` (the
   app's lifespan run around it as uvicorn would): ``requests`` GETs on random known
   customers after ``warmup``, one at a time; :data:`INPROCESS_ROUNDS` rounds, the round
   with the median p99 reported and every round's p50/p99 kept (``in_process.rounds``).
   Then, for the details: ``GET /health`` the same way (the HTTP stack alone), and on the
   same customers one ``HGETALL``, ``load_customer``, :func:`core.risk.assess`, its steps
   one by one, and the route's handler called as a plain function (``assess`` + building
   and serialising the answer).
   ``api_at_risk_p50_ms`` / ``api_at_risk_p99_ms`` — ``GET
   /customers/at-risk?band=high&limit=50`` the same way (:mod:`bench.api_at_risk`).
4. ``api_rps`` / ``api_p50_ms`` / ``api_p99_ms`` — ``churnstream api`` (one uvicorn worker
   process, uvloop + httptools) as a subprocess on 127.0.0.1 and a free port, the same
   settings in its environment, loaded by ``wrk --latency`` with a Lua script that picks a
   random customer per request from a file of ids: a warm-up, then ``-c64``, ``-c16`` and ``-c4``
   passes of ``wrk_seconds`` (two threads each). The headline is the pass with the most
   requests/s; wrk, the server and Redis share the machine's cores. Details only: a pass
   on ``/health``, and one on the risk route with ``CHURN_LOG_LEVEL=WARNING`` (no access
   log line per request).
5. ``api_at_risk_cluster_p50_ms`` / ``api_at_risk_cluster_p99_ms`` — once the single
   server's customers are deleted, the same customers on a Redis Cluster of three masters
   (``REDIS_CLUSTER_URL``, else local ones started for the phase) and the same at-risk
   requests (``with_cluster=False`` leaves this phase out).

The machine is shared: before each measuring phase the benchmark waits (up to 20 s) for
the rest of the machine to go quiet, and every phase records the CPU seconds of the
server (or this process), Redis, wrk and all other processes, and the Redis commands
per request (~1 when nobody else uses that Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.api_at_risk import HEADLINE, cluster_phase, measure_at_risk
from bench.api_load import (
    TilePool,
    available_memory_bytes,
    customer_id,
    delete_prefix,
    estimated_bytes_per_customer,
    load_customers,
    load_details,
    memory_usage_sample,
    suspend_aof_rewrites,
    wait_for_persistence,
)
from bench.api_measure import (
    PhaseCpu,
    app_of,
    lifespan_of,
    redis_state,
    wait_for_quiet,
)
from bench.api_server import bench_model, server_phase
from bench.common import how_run, percentiles_ms, services, write_result
from core.customer_encoding import decode_customer
from core.features import features_of
from core.keys import Keys
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings

log = logging.getLogger("bench.api")

AT_RISK_REQUESTS = 2000
AT_RISK_WARMUP = 50
INPROCESS_ROUNDS = 3  # rounds of the in-process lookup figure (the median p99 is reported)

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- in-process -----------------------------------------------------------------------------


async def _inprocess(
    app: Any, ids: Sequence[str], warm_ids: Sequence[str]
) -> tuple[list[float], dict[int, int], dict[str, list[float]]]:
    """HTTP requests through httpx's ASGI transport, then (same app, same lifespan, same
    Redis client) the pieces of the route called directly."""
    import httpx

    from core.risk import assess

    samples: list[float] = []
    statuses: dict[int, int] = {}
    async with lifespan_of(app) as asgi:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for cid in warm_ids:
                response = await client.get(f"/customers/{cid}/risk")
                if response.status_code != 200:
                    raise RuntimeError(
                        f"warm-up GET {cid}: {response.status_code} {response.text[:300]}"
                    )
            for cid in ids:
                start = time.perf_counter()
                response = await client.get(f"/customers/{cid}/risk")
                samples.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            health = []  # the HTTP stack alone: an async route answering a constant
            for _ in range(min(len(ids), 1000)):
                start = time.perf_counter()
                await client.get("/health")
                health.append(time.perf_counter() - start)
        pieces: dict[str, list[float]] = {"health": health}
        state = app.state.services
        model = state.watcher.model
        store = state.store
        keys = state.keys
        pieces["hgetall"] = _timed(lambda cid: store.redis.hgetall(keys.customer(cid)), ids)
        pieces["load_customer"] = _timed(store.load_customer, ids)
        pieces["assess"] = _timed(lambda cid: assess(store, model, cid, time.time()), ids)
        # assess's steps one by one, on state fetched beforehand
        fetched = {cid: store.redis.hgetall(keys.customer(cid)) for cid in ids}
        decoded = {}

        def decode(cid: str) -> None:
            # as load_customer does for reading: without the event hashes
            decoded[cid] = decode_customer(cid, fetched[cid], with_event_hashes=False).aggregates

        pieces["decode_customer"] = _timed(decode, ids)
        now = int(time.time())
        features = {}

        def featurize(cid: str) -> None:
            features[cid] = features_of(decoded[cid], now)

        pieces["features_of"] = _timed(featurize, ids)
        pieces["score_and_contributions"] = _timed(
            lambda cid: (model.score_one(features[cid]), model.contributions(features[cid])), ids
        )
        from serving.routes import json_response
        from serving.routes.customers import risk_answer

        route = []
        for cid in ids:
            start = time.perf_counter()
            status, content = await risk_answer(state, cid, model)
            json_response(content, status)
            route.append(time.perf_counter() - start)
        pieces["route"] = route
    return samples, statuses, pieces


def _timed(fn: Callable[[str], Any], ids: Sequence[str]) -> list[float]:
    samples = []
    for cid in ids:
        start = time.perf_counter()
        fn(cid)
        samples.append(time.perf_counter() - start)
    return samples


def measure_inprocess(
    settings: Settings, ids: Sequence[str], warm_ids: Sequence[str]
) -> dict[str, Any]:
    app = app_of(settings)
    quiet = logging.getLogger("httpx")  # logs every request at INFO: not the app's cost
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        samples, statuses, pieces = asyncio.run(_inprocess(app, ids, warm_ids))
    finally:
        quiet.setLevel(level)
    if statuses.get(200, 0) != len(ids):
        raise RuntimeError(f"in-process answers were not all 200: {statuses}")
    result: dict[str, Any] = {
        "http_in_process": {
            **percentiles_ms(samples),
            "requests": len(ids),
            "warmup_requests": len(warm_ids),
            "statuses": statuses,
            "how": "httpx.AsyncClient(transport=httpx.ASGITransport(app)) on "
            "serving.main.create_app(settings), its lifespan run around the client, one "
            "request at a time on an asyncio loop; wall time of each `await client.get()` "
            "(includes httpx, serving.fast_path and the risk batcher: a lone lookup is a "
            "batch of one, its HGETALL read on the event loop)",
        },
        "health_in_process": {
            **percentiles_ms(pieces["health"]),
            "is": "GET /health the same way: the HTTP stack alone (async route, constant)",
        },
        "hgetall_only": {**percentiles_ms(pieces["hgetall"]), "is": "one HGETALL (redis-py)"},
        "load_customer": {
            **percentiles_ms(pieces["load_customer"]),
            "is": "FeatureStore.load_customer: HGETALL + decode_customer (no event hashes)",
        },
        "assess": {
            **percentiles_ms(pieces["assess"]),
            "is": "core.risk.assess: load_customer + features_of + score + contributions",
        },
        "assess_steps": {
            "decode_customer": percentiles_ms(pieces["decode_customer"]),
            "features_of": percentiles_ms(pieces["features_of"]),
            "score_and_contributions": percentiles_ms(pieces["score_and_contributions"]),
            "is": "the steps of assess after the HGETALL, each timed alone on state fetched "
            "beforehand",
        },
    }
    result["route_handler_direct"] = {
        **percentiles_ms(pieces["route"]),
        "is": "serving.routes.customers.risk_answer awaited directly: the batcher (a batch "
        "of one: HGETALL on the event loop, decoding, features, score) + building the "
        "answer + orjson + Response, without ASGI or HTTP",
    }
    return result


def run(
    customers: int = 1_000_000,
    requests: int = 5000,
    warmup: int = 200,
    wrk_seconds: int = 20,
    memory_budget_gib: float = 8.0,
    seed: int = 7,
    with_cluster: bool = True,
) -> dict[str, Any]:
    """Run every phase (see the module docstring); write ``results/api.json``."""
    wrk = shutil.which("wrk")
    rng = np.random.default_rng(seed)
    pool = TilePool.build(rng)
    per_customer = estimated_bytes_per_customer(pool)
    available = available_memory_bytes()
    budget = min(memory_budget_gib * 2**30, available / 2)
    n = min(customers, int(budget // per_customer))
    if n < customers:
        log.warning(
            "loading %d customers instead of %d: ~%.0f bytes each would exceed %.1f GiB",
            n, customers, per_customer, budget / 2**30,
        )  # fmt: skip
    prefix = f"benchapi{n}"
    details: dict[str, Any] = {
        **how_run("api"),
        "customers_requested": customers,
        "customers": n,
        "redis_key_prefix": prefix,
        "memory_check": {
            "mem_available_gib": round(available / 2**30, 1),
            "budget_gib": round(budget / 2**30, 1),
            "estimated_bytes_per_customer": round(per_customer),
        },
    }
    figures: dict[str, Any] = {"api_customers": n}
    temp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    with services() as svc, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, temp, True)
        settings = svc.settings.model_copy(
            update={"redis_key_prefix": prefix, "model_dir": temp / "models"}
        )
        client = connect_redis(settings)
        keys = Keys(prefix, settings.topic_partitions)
        details["redis_before"] = redis_state(client)
        leftovers, _ = delete_prefix(client, keys)  # an earlier run that died
        details["leftover_keys_deleted_first"] = leftovers
        restore_rewrites = suspend_aof_rewrites(client)
        details["auto_aof_rewrite_suspended"] = restore_rewrites is not None
        cleanup.callback(_clean_up_redis, client, keys, n, details, restore_rewrites)

        model = bench_model(f"bench-api-{uuid.uuid4().hex[:8]}")
        registry = ModelRegistry(settings, client)
        registry.promote(registry.register(model, metrics={}, training={"source": "bench"}).version)
        details["model"] = {
            "version": model.version,
            "kind": model.kind,
            "features": len(model.feature_names),
            "model_dir": str(settings.model_dir),
            "how": "ModelRegistry.register + promote (the worker benchmark's LinearModel)",
        }

        log.info("loading %d customers under %s:*", n, prefix)
        now = time.time()
        report = load_customers(client, keys, n, pool, model, now, rng)
        after_load = redis_state(client)
        waited = wait_for_persistence(client)
        details["load"] = load_details(report, pool, details["redis_before"], after_load, n)
        details["load"]["waited_for_aof_rewrite_seconds"] = round(waited, 1)
        details["load"]["memory_usage_sample"] = memory_usage_sample(client, keys, n, rng)
        log.info("loaded in %.1fs (%.0f customers/s)", report.seconds, n / report.seconds)

        # In-process lookups: INPROCESS_ROUNDS rounds (fresh random customers each); the
        # round with the median p99 is the headline, every round is kept.
        inprocess_rounds: list[dict[str, Any]] = []
        for round_ in range(INPROCESS_ROUNDS):
            ids = [customer_id(i) for i in rng.integers(0, n, size=requests).tolist()]
            warm_ids = [customer_id(i) for i in rng.integers(0, n, size=warmup).tolist()]
            quiet = wait_for_quiet()
            phase = PhaseCpu(client)
            measured = measure_inprocess(settings, ids, warm_ids)
            measured["machine"] = {**quiet, "cpu_seconds": phase.result()}
            inprocess_rounds.append(measured)
            log.info("in-process round=%d: %s", round_, measured["http_in_process"])
        by_p99 = sorted(inprocess_rounds, key=lambda r: r["http_in_process"]["p99_ms"])
        inprocess = by_p99[len(by_p99) // 2]
        inprocess["rounds"] = [
            {k: r["http_in_process"][k] for k in ("p50_ms", "p99_ms", "max_ms")}
            for r in inprocess_rounds
        ]
        details["in_process"] = inprocess
        figures["api_inprocess_p50_ms"] = inprocess["http_in_process"]["p50_ms"]
        figures["api_inprocess_p99_ms"] = inprocess["http_in_process"]["p99_ms"]

        at_risk = measure_at_risk(settings, AT_RISK_REQUESTS, AT_RISK_WARMUP)
        details["at_risk"] = at_risk
        figures["api_at_risk_p50_ms"] = at_risk[HEADLINE]["p50_ms"]
        figures["api_at_risk_p99_ms"] = at_risk[HEADLINE]["p99_ms"]
        log.info("at-risk: %s", at_risk[HEADLINE])

        if wrk is None:
            details["server"] = "skipped: wrk is not installed (apt-get install -y wrk)"
        else:
            server_details, best = server_phase(
                settings, client, wrk, n, temp, rng, wrk_seconds, cleanup
            )
            details["server"] = server_details
            figures.update(best)
        cleanup.close()
        if with_cluster:
            on_cluster = cluster_phase(
                settings, n, pool, model, rng, AT_RISK_REQUESTS, AT_RISK_WARMUP
            )
            details["cluster"] = on_cluster
            figures["api_at_risk_cluster_p50_ms"] = on_cluster["at_risk"][HEADLINE]["p50_ms"]
            figures["api_at_risk_cluster_p99_ms"] = on_cluster["at_risk"][HEADLINE]["p99_ms"]
            log.info("at-risk on a cluster: %s", on_cluster["at_risk"][HEADLINE])
    details["redis_after"] = details.pop("redis_after_cleanup", None)
    path = write_result("api", figures, details)
    return {**figures, "load_seconds": details["load"]["seconds"], "details": str(path)}


def _clean_up_redis(
    client: redis.Redis,
    keys: Keys,
    n: int,
    details: dict[str, Any],
    restore_rewrites: Callable[[], None] | None,
) -> None:
    """Delete the prefix, let lazy freeing finish, turn automatic AOF rewrites back on and
    compact the AOF if the load grew it."""
    try:
        deleted, seconds = delete_prefix(client, keys, known=n)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and int(
            client.info("memory").get("lazyfree_pending_objects", 0)
        ):
            time.sleep(0.2)
    finally:
        if restore_rewrites is not None:
            restore_rewrites()
    with contextlib.suppress(redis.ResponseError):
        client.memory_purge()
    after = redis_state(client)
    cleanup: dict[str, Any] = {"keys_deleted": deleted, "delete_seconds": round(seconds, 2)}
    if restore_rewrites is not None:
        cleanup["auto_aof_rewrite"] = "suspended during the benchmark, restored"
    before = details.get("redis_before", {})
    if (
        after["aof_enabled"]
        and after["aof_current_size"] > 2 * before.get("aof_current_size", 0) + 2**26
    ):
        # The load and the deletes were appended to the AOF: rewrite it so the disk space
        # (and the replay time of a restart) goes back to what it was. Content unchanged.
        wait_for_persistence(client)
        with contextlib.suppress(redis.ResponseError):
            client.bgrewriteaof()
            cleanup["bgrewriteaof"] = "started (the AOF had grown by the load and the deletes)"
    details["cleanup"] = cleanup
    details["redis_after_cleanup"] = after
