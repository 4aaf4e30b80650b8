"""API benchmark: ``GET /customers/{id}/risk`` with a million customers' state in Redis.

Every figure is measured against the real Redis server of :func:`bench.common.services`,
under an isolated key prefix (``benchapi<N>``) that is deleted again at the end (UNLINK
by name, then SCAN + UNLINK for anything else), even when a phase fails; when the load
grew Redis's append-only file, a ``BGREWRITEAOF`` gives the disk space back (automatic
AOF rewrites are suspended meanwhile: see :func:`suspend_aof_rewrites`). The phases:

1. **Load** ``customers`` customers' state, in the store's own format: each customer gets
   20-30 day tiles (a uniform number) spread over the 90 days before their last active day
   (0-29 days ago, mostly recent), plus the scalars field and the latest-score fields,
   and a member in the ``risk`` and ``scored_at`` sorted sets. Tiles come from a pool of
   :data:`POOL_TILES` distinct tiles built with :class:`core.aggregates.CustomerAggregates`
   (``set_tile``) and encoded with :func:`core.store.encode_tile`; each tile holds 1-80
   events (mean ~10) split over the event types with consistent counters (sessions,
   seconds, cents) and one 64-bit hash per event. Scalars go through
   :func:`core.store.encode_scalars` and scores through :func:`core.store.score_fields`.
   Commands are written as raw RESP in chunks of :data:`CHUNK` customers (one ``HSET``
   each, one ``ZADD`` per sorted set per chunk) on one connection, no transactions; a
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
   customers after ``warmup``, one at a time. Then, for the details: ``GET /health`` the
   same way (the HTTP stack alone), and on the same customers one ``HGETALL``,
   ``load_customer``, :func:`core.risk.assess`, its steps one by one, and the route's
   handler called as a plain function (``assess`` + building and serialising the answer).
4. ``api_rps`` / ``api_p50_ms`` / ``api_p99_ms`` — ``churnstream api`` (one uvicorn worker
   process, uvloop + httptools) as a subprocess on 127.0.0.1 and a free port, the same
   settings in its environment, loaded by ``wrk --latency`` with a Lua script that picks a
   random customer per request from a file of ids: a warm-up, then ``-c64``, ``-c16`` and ``-c4``
   passes of ``wrk_seconds`` (two threads each). The headline is the pass with the most
   requests/s; wrk, the server and Redis share the machine's cores. Details only: a pass
   on ``/health``, and one on the risk route with ``CHURN_LOG_LEVEL=WARNING`` (no access
   log line per request).

The machine is shared: before each measuring phase the benchmark waits (up to 20 s) for
the rest of the machine to go quiet, and every phase records the CPU seconds of the
server (or this process), Redis, wrk and all other processes, and the Redis commands
per request (~1 when nobody else uses that Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis

from bench.common import services, write_result
from core.aggregates import COUNTERS, DAY_SECONDS, NEVER, C, CustomerAggregates
from core.features import features_of
from core.keys import SCALARS_FIELD, TILE_PREFIX, Keys
from core.model import LinearModel
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.scores import Score
from core.settings import Settings, env_var_name
from core.store import FeatureStore, decode_customer, encode_scalars, encode_tile, score_fields

log = logging.getLogger("bench.api")

REPO_ROOT = Path(__file__).resolve().parents[1]

POOL_TILES = 8192  # distinct tiles customers draw from
CHUNK = 2000  # customers per pipelined write
TILES_MIN, TILES_MAX = 20, 30  # tiles per customer, inclusive
WINDOW_DAYS = 90  # a customer's tiles lie in the 90 days up to their last active day
LAST_ACTIVE_MAX_DAYS_AGO = 29
VERIFY_CUSTOMERS = 5
DELETE_BATCH = 5000

# Settings the API subprocess gets from the environment (everything else: defaults).
_SETTINGS_PASSED = ("kafka_bootstrap_servers", "redis_url", "redis_key_prefix", "model_dir")


# --- RESP, written by hand: the loader's hot loop ------------------------------------------


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


# --- the tile pool ------------------------------------------------------------------------

# Events other than session start/end, with their share of a tile's events.
_EVENT_MIX: tuple[tuple[str, float], ...] = (
    ("page_view", 0.36),
    ("play", 0.42),
    ("like", 0.06),
    ("dislike", 0.015),
    ("add_friend", 0.015),
    ("add_to_playlist", 0.04),
    ("help", 0.008),
    ("error", 0.012),
    ("upgrade", 0.002),
    ("downgrade", 0.002),
    ("cancellation", 0.001),
    ("purchase", 0.025),
    ("refund", 0.004),
)


@dataclass
class TilePool:
    """Distinct encoded tiles: counters, event hashes, the stored bytes and their RESP."""

    counts: list[np.ndarray]
    hashes: list[list[int]]
    encoded: list[bytes]
    resp: list[bytes]
    events: np.ndarray  # events per tile

    @classmethod
    def build(cls, rng: np.random.Generator, size: int = POOL_TILES) -> TilePool:
        names = [n for n, _ in _EVENT_MIX]
        probabilities = np.array([p for _, p in _EVENT_MIX])
        probabilities /= probabilities.sum()
        # events per tile: 1 + negative binomial (mean ~10, long tail), at most 80
        events = np.minimum(1 + rng.negative_binomial(2, 2 / 11, size=size), 80)
        counts, hashes, encoded, resp = [], [], [], []
        scratch = CustomerAggregates("pool")
        for i, n in enumerate(events.tolist()):
            row = np.zeros(len(COUNTERS), dtype=np.int64)
            sessions = max(1, n // 12) if n >= 2 else 0
            row[C["session_start"]] = sessions
            row[C["session_end"]] = sessions
            others = rng.multinomial(n - 2 * sessions, probabilities)
            for name, k in zip(names, others.tolist(), strict=True):
                row[C[name]] = k
            row[C["session_seconds"]] = int(sessions * rng.integers(300, 3600))
            row[C["play_seconds"]] = int(row[C["play"]] * rng.integers(120, 300))
            row[C["revenue_cents"]] = int(row[C["purchase"]] * rng.choice([499, 999, 1499]))
            row[C["items"]] = int(row[C["purchase"]] * rng.integers(1, 4))
            row[C["refund_cents"]] = int(row[C["refund"]] * rng.choice([499, 999]))
            row[C["refund_items"]] = int(row[C["refund"]])
            digests = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64).tolist()
            # through the aggregates' own loader, so the pool is what the store would hold
            scratch.set_tile(i, row.tolist(), digests)
            value = encode_tile(scratch.tile_counts()[-1], scratch.event_hashes[-1])
            counts.append(row)
            hashes.append(digests)
            encoded.append(value)
            resp.append(_bulk(value))
        return cls(counts, hashes, encoded, resp, events)


class _Scalars:
    """Just the attributes :func:`encode_scalars` reads (a CustomerAggregates stand-in that
    costs nothing to build)."""

    __slots__ = ("first_seen", "last_activity", "last_event", "last_purchase", "level", "level_key")

    def __init__(self, first_seen: int, last_event: int, last_purchase: int, level: str) -> None:
        self.first_seen = first_seen
        self.last_event = last_event
        self.last_activity = last_event
        self.last_purchase = last_purchase
        self.level = level
        self.level_key = (first_seen, f"e-{first_seen:x}")


# --- loading ------------------------------------------------------------------------------


@dataclass
class LoadReport:
    customers: int
    seconds: float
    tiles_total: int
    bytes_sent: int
    python_seconds: float  # building commands
    wait_seconds: float  # blocked behind the sender thread (Redis slower than the builder)
    verified: list[str] = field(default_factory=list)


def customer_id(i: int) -> str:
    return f"C{i:07d}"


def load_customers(
    client: redis.Redis,
    keys: Keys,
    n: int,
    pool: TilePool,
    model: LinearModel,
    now: float,
    rng: np.random.Generator,
) -> LoadReport:
    """Write ``n`` customers (``customer_id(0..n-1)``) as described in the module docstring."""
    today = int(now) // DAY_SECONDS
    verify_at = set(np.linspace(0, n - 1, VERIFY_CUSTOMERS).astype(int).tolist())
    expected: dict[str, CustomerAggregates] = {}
    day0 = today - LAST_ACTIVE_MAX_DAYS_AGO - WINDOW_DAYS
    day_fields = [_bulk(f"{TILE_PREFIX}{day}".encode()) for day in range(day0, today + 1)]
    f_scalars = _bulk(SCALARS_FIELD.encode())
    f_names = {name: _bulk(name.encode()) for name in score_fields(_dummy_score())}
    hset = _bulk(b"HSET")
    zadd = _bulk(b"ZADD")
    risk_key, scored_key = _bulk(keys.risk.encode()), _bulk(keys.scored_at.encode())

    connection: Any = client.connection_pool.get_connection()
    pending = 0  # replies of the chunk sent before, still to read

    def send(data: bytes, replies: int) -> None:
        """In the sender thread: write one chunk (the socket write releases the GIL, so
        the next chunk is built meanwhile), then read the previous chunk's replies."""
        nonlocal pending
        connection.send_packed_command([data], check_health=False)
        _read_replies(connection, pending)
        pending = replies

    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-load")
    in_flight: deque[Future[None]] = deque()
    tiles_total = bytes_sent = 0
    python_s = wait_s = 0.0
    start = time.perf_counter()
    try:
        for base in range(0, n, CHUNK):
            t0 = time.perf_counter()
            m = min(CHUNK, n - base)
            n_tiles = rng.integers(TILES_MIN, TILES_MAX + 1, size=m)
            last_ago = np.minimum(rng.geometric(0.2, size=m) - 1, LAST_ACTIVE_MAX_DAYS_AGO)
            # distinct day offsets before the last active day; offset 0 always present
            order = rng.random((m, WINDOW_DAYS))
            order[:, 0] = -1.0
            offsets = np.argsort(order, axis=1)[:, :TILES_MAX]
            picks = rng.integers(0, len(pool.resp), size=(m, TILES_MAX))
            seconds_in_day = rng.integers(0, DAY_SECONDS, size=(m, 2))
            tenure_extra = rng.integers(0, 365, size=m) * (rng.random(m) < 0.5)
            buys = rng.random(m) < 0.4
            paid = rng.random(m) < 0.3
            scores = rng.beta(1.5, 6.0, size=m)
            scored_at = now - rng.random(m) * 3600
            last_day = (today - last_ago).tolist()
            day_rows = (today - last_ago - day0)[:, None] - offsets  # indexes into day_fields
            day_rows_l = day_rows.tolist()
            pick_rows = picks.tolist()
            n_tiles_l = n_tiles.tolist()
            seconds_l = seconds_in_day.tolist()
            tenure_l = tenure_extra.tolist()
            buys_l, paid_l = buys.tolist(), paid.tolist()
            scores_l, scored_at_l = scores.tolist(), scored_at.tolist()
            out: list[bytes] = []
            risk_args: list[bytes] = []
            scored_args: list[bytes] = []
            for j in range(m):
                i = base + j
                cid = customer_id(i)
                k = n_tiles_l[j]
                day_idx = day_rows_l[j][:k]
                tiles = pick_rows[j][:k]
                first_day = day0 + min(day_idx)
                in_day, in_day_2 = seconds_l[j]
                last_event = min(last_day[j] * DAY_SECONDS + in_day, int(now) - 1)
                first_seen = min((first_day - tenure_l[j]) * DAY_SECONDS + in_day_2, last_event)
                last_purchase = (
                    (day0 + day_idx[k // 2]) * DAY_SECONDS + in_day_2 if buys_l[j] else NEVER
                )
                scalars = _Scalars(
                    first_seen, last_event, last_purchase, "paid" if paid_l[j] else "free"
                )
                score = Score(
                    customer_id=cid,
                    score=scores_l[j],
                    band=model.band_of(scores_l[j]),
                    model_version=model.version,
                    scored_at=scored_at_l[j],
                    last_event_time=last_event,
                )
                parts = [
                    b"*%d\r\n" % (2 + 2 * (1 + len(f_names) + k)),
                    hset,
                    _bulk(keys.customer(cid).encode()),
                    f_scalars,
                    _bulk(encode_scalars(cast(CustomerAggregates, scalars))),
                ]
                for name, value in score_fields(score).items():
                    parts.append(f_names[name])
                    parts.append(_bulk(value.encode()))
                pairs: list[bytes] = [b""] * (2 * k)
                pairs[0::2] = itemgetter(*day_idx)(day_fields)
                pairs[1::2] = itemgetter(*tiles)(pool.resp)
                parts += pairs
                out.append(b"".join(parts))
                member = _bulk(cid.encode())
                risk_args += (_bulk(repr(score.score).encode()), member)
                scored_args += (_bulk(repr(score.scored_at).encode()), member)
                tiles_total += k
                if i in verify_at:
                    days = [day0 + d for d in day_idx]
                    expected[cid] = _aggregates_of(cid, days, tiles, pool, scalars)
            out.append(b"*%d\r\n" % (2 + 2 * m) + zadd + risk_key + b"".join(risk_args))
            out.append(b"*%d\r\n" % (2 + 2 * m) + zadd + scored_key + b"".join(scored_args))
            data = b"".join(out)
            t1 = time.perf_counter()
            python_s += t1 - t0
            while len(in_flight) >= 2:  # at most two chunks queued behind the socket
                in_flight.popleft().result()
            in_flight.append(sender.submit(send, data, m + 2))
            bytes_sent += len(data)
            wait_s += time.perf_counter() - t1
        t1 = time.perf_counter()
        while in_flight:
            in_flight.popleft().result()
        sender.submit(_read_replies, connection, pending).result()
        wait_s += time.perf_counter() - t1
    except BaseException:
        for future in in_flight:
            future.cancel()
        sender.shutdown(wait=True)
        connection.disconnect()
        raise
    finally:
        sender.shutdown(wait=True)
        client.connection_pool.release(connection)
    seconds = time.perf_counter() - start
    store = FeatureStore(client, keys)
    for cid, agg in expected.items():
        fields = cast(dict[bytes, bytes], client.hgetall(keys.customer(cid)))
        stored = decode_customer(cid, fields)  # everything, event hashes included
        if stored.aggregates.snapshot() != agg.snapshot():
            raise RuntimeError(f"customer {cid} did not read back as written")
        if stored.score is None or stored.score.model_version != model.version:
            raise RuntimeError(f"customer {cid} has no score after loading")
        if store.load_customer(cid) is None:  # the API's read path
            raise RuntimeError(f"the store does not find customer {cid}")
    return LoadReport(n, seconds, tiles_total, bytes_sent, python_s, wait_s, sorted(expected))


def _read_replies(connection: Any, count: int) -> None:
    for _ in range(count):
        reply = connection.read_response()
        if isinstance(reply, Exception):
            raise reply


def _dummy_score() -> Score:
    return Score("x", 0.0, "low", "v", 0.0, 0)


def _aggregates_of(
    cid: str, days: Sequence[int], tiles: Sequence[int], pool: TilePool, scalars: _Scalars
) -> CustomerAggregates:
    agg = CustomerAggregates(cid)
    for day, tile in zip(days, tiles, strict=True):
        agg.set_tile(day, pool.counts[tile].tolist(), pool.hashes[tile])
    for name in _Scalars.__slots__:
        setattr(agg, name, getattr(scalars, name))
    return agg


def delete_prefix(client: redis.Redis, prefix: str, known: int = 0) -> tuple[int, float]:
    """UNLINK every key under ``prefix:``; (keys deleted, seconds). The ``known`` customers
    (``customer_id(0..known-1)``) go first by name, in pipelined batches; then SCAN finds
    whatever else is there (cheap once the keyspace is small again)."""
    start = time.perf_counter()
    deleted = 0
    keys = Keys(prefix)
    for base in range(0, known, DELETE_BATCH * 10):
        pipe = client.pipeline(transaction=False)
        for first in range(base, min(known, base + DELETE_BATCH * 10), DELETE_BATCH):
            last = min(known, first + DELETE_BATCH)
            pipe.unlink(*(keys.customer(customer_id(i)) for i in range(first, last)))
        deleted += sum(cast(list[int], pipe.execute()))
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=DELETE_BATCH):
        batch.append(cast(bytes, key))
        if len(batch) >= DELETE_BATCH:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted, time.perf_counter() - start


def wait_for_persistence(client: redis.Redis, timeout: float = 180) -> float:
    """Wait until no AOF rewrite / RDB save runs (a forked child would compete for the
    cores during the measurements); return the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        info = client.info("persistence")
        busy = (
            info.get("aof_rewrite_in_progress")
            or info.get("aof_rewrite_scheduled")
            or info.get("rdb_bgsave_in_progress")
        )
        if not busy:
            return time.monotonic() - start
        time.sleep(0.5)
    log.warning("Redis still persisting after %.0fs; measuring anyway", timeout)
    return time.monotonic() - start


def available_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def estimated_bytes_per_customer(pool: TilePool) -> float:
    """Redis memory per customer, estimated: payload plus hashtable and key overheads."""
    mean_tile = float(np.mean([len(v) for v in pool.encoded]))
    tiles = (TILES_MIN + TILES_MAX) / 2
    fields = tiles + 6
    return tiles * mean_tile + 120 + fields * 72 + 150 + 200  # + scalars/scores + key + zsets


# --- timing helpers -------------------------------------------------------------------------


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p90_ms": round(float(np.percentile(values, 90)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "max_ms": round(float(values.max()), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in family:
                family.add(child)
                frontier.append(child)
    return sum(process_cpu_seconds(p) for p in family)


# --- in-process -----------------------------------------------------------------------------


def _app_of(settings: Settings) -> Any:
    from serving.main import create_app

    return create_app(settings)


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> Any:
    """Run the app's lifespan around the block, and hand its state to each request the way
    uvicorn does (httpx's ASGITransport does neither)."""
    async with app.router.lifespan_context(app) as state:
        shared = dict(state) if state else {}

        async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                scope["state"] = dict(shared)
            await app(scope, receive, send)

        yield with_state


async def _inprocess(
    app: Any, ids: Sequence[str], warm_ids: Sequence[str]
) -> tuple[list[float], dict[int, int], dict[str, list[float]]]:
    """HTTP requests through httpx's ASGI transport, then (same app, same lifespan, same
    Redis client) the pieces of the route called directly."""
    import httpx

    from core.risk import assess

    samples: list[float] = []
    statuses: dict[int, int] = {}
    async with _lifespan(app) as asgi:
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
    app = _app_of(settings)
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
            "(includes httpx, serving.fast_path and the hop of the Redis read to the risk "
            "batcher's reader thread)",
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
        "is": "serving.routes.customers.risk_answer awaited directly: the batcher (Redis "
        "read on its thread, decoding, features, score) + building the answer + orjson + "
        "Response, without ASGI or HTTP",
    }
    return result


# --- the server under wrk -------------------------------------------------------------------

# wrk's done() hook: requests, duration, errors and latency percentiles as one JSON line
WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, " ..
    "\\"errors_connect\\": %d, \\"errors_read\\": %d, \\"errors_write\\": %d, " ..
    "\\"errors_status\\": %d, \\"errors_timeout\\": %d, \\"p50_us\\": %d, " ..
    "\\"p90_us\\": %d, \\"p99_us\\": %d, \\"p999_us\\": %d, \\"max_us\\": %d, " ..
    "\\"mean_us\\": %.1f}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

# picks a random customer per request from a file of ids (one per line)
WRK_SCRIPT = """-- GET /customers/<random id>/risk
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
local n = #ids
local counter = 1

setup = function(thread)
  thread:set("seed", %(seed)d + counter)
  counter = counter + 1
end

init = function(args)
  math.randomseed(seed)
end

request = function()
  return wrk.format("GET", "/customers/" .. ids[math.random(n)] .. "/risk")
end
""" + WRK_DONE.replace("%", "%%")


class ApiServer:
    """``churnstream api`` (one uvicorn worker) as a subprocess on 127.0.0.1:``port``."""

    def __init__(
        self,
        settings: Settings,
        port: int,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.env_shown: dict[str, str] = {}

    def start(self, timeout: float = 60) -> float:
        env = dict(os.environ)
        paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        for name in _SETTINGS_PASSED:
            self.env_shown[env_var_name(name)] = str(getattr(self.settings, name))
        self.env_shown.update({"CHURN_API_HOST": "127.0.0.1", "CHURN_API_PORT": str(self.port)})
        self.env_shown.update(self.extra_env)
        env.update(self.env_shown)
        self.command = api_command(self.port)
        started = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log_tail()}")
            if self.ready():
                return time.perf_counter() - started
            time.sleep(0.1)
        raise TimeoutError(f"the API was not ready within {timeout}s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/ready"), timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def api_command(port: int) -> list[str]:
    """``churnstream api`` (its ``serving.cli.api`` directly while the top-level CLI does
    not list it yet), else uvicorn with the options ``churnstream api`` uses."""
    where = ["--host", "127.0.0.1", "--port", str(port)]
    cli = REPO_ROOT / "churnstream" / "cli.py"
    if cli.exists() and "serving" in cli.read_text():
        return [sys.executable, "-c", "from churnstream.cli import main; main()", "api", *where]
    if (REPO_ROOT / "serving" / "cli.py").exists():
        run_api = "import typer; from serving.cli import api; typer.run(api)"
        return [sys.executable, "-c", run_api, *where]
    return [
        sys.executable, "-m", "uvicorn", "--factory", "serving.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    ]  # fmt: skip


def run_wrk(
    wrk: str, url: str, script: Path, threads: int, connections: int, seconds: int
) -> dict[str, Any]:
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return {"command": " ".join(command), **parse_wrk(out.stdout), "output": out.stdout}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, the latency distribution and errors from wrk's output (the ``done``
    hook's JSON line when present, wrk's own summary otherwise)."""
    result: dict[str, Any] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result["rps"] = float(match.group(1))
    distribution = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        distribution[f"p{pct}_ms"] = round(float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit], 3)
    result["wrk_distribution"] = distribution
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if match:
        hook = json.loads(match.group(1))
        result["requests"] = hook["requests"]
        result["seconds"] = round(hook["duration_us"] / 1e6, 3)
        result["rps"] = round(hook["requests"] / (hook["duration_us"] / 1e6), 1)
        for name in ("p50", "p90", "p99", "p999", "max"):
            result[f"{name}_ms"] = round(hook[f"{name}_us"] / 1000, 3)
        result["mean_ms"] = round(hook["mean_us"] / 1000, 3)
        result["errors"] = {k[7:]: v for k, v in hook.items() if k.startswith("errors_")}
    else:
        result.update({k: v for k, v in distribution.items() if k in ("p50_ms", "p99_ms")})
    return result


# --- the benchmark --------------------------------------------------------------------------


def bench_model(version: str) -> LinearModel:
    """The worker benchmark's trained LinearModel, under a version of its own."""
    from bench.worker_support import champion_model

    return dataclasses.replace(champion_model(), version=version)


def run(
    customers: int = 1_000_000,
    requests: int = 5000,
    warmup: int = 200,
    wrk_seconds: int = 20,
    memory_budget_gib: float = 8.0,
    seed: int = 7,
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
        "command": "make bench BENCH_ARGS='--only api'",
        "invocation": " ".join([sys.executable, "-m", "bench.run", *sys.argv[1:]]),
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
        keys = Keys(prefix)
        details["redis_before"] = _redis_state(client)
        leftovers, _ = delete_prefix(client, prefix)  # an earlier run that died
        details["leftover_keys_deleted_first"] = leftovers
        restore_rewrites = suspend_aof_rewrites(client)
        details["auto_aof_rewrite_suspended"] = restore_rewrites is not None
        cleanup.callback(_clean_up_redis, client, prefix, n, details, restore_rewrites)

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
        after_load = _redis_state(client)
        waited = wait_for_persistence(client)
        details["load"] = _load_details(report, pool, details["redis_before"], after_load, n)
        details["load"]["waited_for_aof_rewrite_seconds"] = round(waited, 1)
        details["load"]["memory_usage_sample"] = _memory_usage_sample(client, keys, n, rng)
        log.info("loaded in %.1fs (%.0f customers/s)", report.seconds, n / report.seconds)

        ids = [customer_id(i) for i in rng.integers(0, n, size=requests).tolist()]
        warm_ids = [customer_id(i) for i in rng.integers(0, n, size=warmup).tolist()]
        quiet = wait_for_quiet()
        phase = PhaseCpu(client)
        inprocess = measure_inprocess(settings, ids, warm_ids)
        inprocess["machine"] = {**quiet, "cpu_seconds": phase.result()}
        details["in_process"] = inprocess
        figures["api_inprocess_p50_ms"] = inprocess["http_in_process"]["p50_ms"]
        figures["api_inprocess_p99_ms"] = inprocess["http_in_process"]["p99_ms"]
        log.info("in-process: %s", inprocess["http_in_process"])

        if wrk is None:
            details["server"] = "skipped: wrk is not installed (apt-get install -y wrk)"
        else:
            server_details, best = _server_phase(
                settings, client, wrk, n, temp, rng, wrk_seconds, cleanup
            )
            details["server"] = server_details
            figures.update(best)
        cleanup.close()
    details["redis_after"] = details.pop("redis_after_cleanup", None)
    path = write_result("api", figures, details)
    return {**figures, "load_seconds": details["load"]["seconds"], "details": str(path)}


def _server_phase(
    settings: Settings,
    client: redis.Redis,
    wrk: str,
    n: int,
    temp: Path,
    rng: np.random.Generator,
    seconds: int,
    cleanup: contextlib.ExitStack,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ids_path = temp / "ids.txt"
    sample = rng.choice(n, size=min(n, 200_000), replace=False)
    ids_path.write_text("".join(f"{customer_id(i)}\n" for i in sample.tolist()))
    script = temp / "risk.lua"
    script.write_text(WRK_SCRIPT % {"ids": ids_path, "seed": int(rng.integers(1, 2**31))})
    health_script = temp / "health.lua"
    health_script.write_text('wrk.path = "/health"\n' + WRK_DONE)
    server = ApiServer(settings, free_port(), temp / "api.log")
    cleanup.callback(server.stop)
    startup = server.start()
    details: dict[str, Any] = {
        "command": " ".join(server.command),
        "environment": server.env_shown,
        "startup_seconds": round(startup, 2),
        "ids_in_script": len(sample),
        "lua_script": "risk.lua: reads the ids file, seeds math.random per thread, "
        "request() = GET /customers/<random id>/risk, done() prints the latency percentiles",
    }
    run_wrk(wrk, server.url(), script, 2, 4, 3)  # warm-up, not reported
    details["machine_before_passes"] = wait_for_quiet()
    passes = {}
    for connections in (64, 16, 4):
        passes[f"c{connections}"] = _wrk_pass(wrk, server, client, script, connections, seconds)
    details["passes"] = passes
    # where the time goes, details only: the HTTP stack alone, and the same server writing
    # an access-log line for every request (CHURN_API_ACCESS_LOG=all; the default logs
    # errors only)
    short = max(5, seconds // 4)
    details["health_c16"] = _wrk_pass(wrk, server, client, health_script, 16, short)
    details["log_tail"] = server.log_tail(3)
    server.stop()
    logging_all = ApiServer(
        settings, free_port(), temp / "api-access-log.log", {"CHURN_API_ACCESS_LOG": "all"}
    )
    cleanup.callback(logging_all.stop)
    logging_all.start()
    run_wrk(wrk, logging_all.url(), script, 2, 4, 2)
    details["c64_access_log_all"] = {
        "environment_added": logging_all.extra_env,
        **_wrk_pass(wrk, logging_all, client, script, 64, max(5, seconds // 2)),
    }
    logging_all.stop()
    reported = [p for p in passes.values() if p.get("p99_ms") is not None and not p.get("non_2xx")]
    best = max(reported or passes.values(), key=lambda p: p.get("rps", 0))
    details["headline_pass"] = best["command"]
    figures = {
        "api_rps": round(best["rps"]),
        "api_p50_ms": best.get("p50_ms"),
        "api_p99_ms": best.get("p99_ms"),
    }
    return details, figures


def _wrk_pass(
    wrk: str,
    server: ApiServer,
    client: redis.Redis,
    script: Path,
    connections: int,
    seconds: int,
) -> dict[str, Any]:
    """One wrk run, with the CPU seconds the server, Redis, wrk and everything else used."""
    server_0 = tree_cpu_seconds(server.pid)
    redis_0 = redis_cpu_seconds(client)
    commands_0 = redis_commands(client)
    children_0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_0, total_0 = machine_busy_seconds()
    result = run_wrk(wrk, server.url(), script, 2, connections, seconds)
    busy_1, total_1 = machine_busy_seconds()
    children_1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_s = children_1.ru_utime + children_1.ru_stime - children_0.ru_utime - children_0.ru_stime
    cpu = {
        "server_s": tree_cpu_seconds(server.pid) - server_0,
        "redis_s": redis_cpu_seconds(client) - redis_0,
        "wrk_s": wrk_s,
    }
    cpu["other_processes_s"] = max(0.0, busy_1 - busy_0 - sum(cpu.values()))
    cpu["idle_s"] = max(0.0, (total_1 - total_0) - (busy_1 - busy_0))
    done = max(int(result.get("requests", 0)), 1)
    # ~1 (the HGETALL) when nobody else uses this Redis; more means its CPU is shared too
    result["redis_commands_per_request"] = round((redis_commands(client) - commands_0) / done, 2)
    result["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    result["cpu_ms_per_request"] = {
        k[:-2]: round(v / done * 1000, 3) for k, v in cpu.items() if k != "idle_s"
    }
    log.info(
        "wrk %s -c%d: %.0f rps, p50 %s ms, p99 %s ms, server CPU %.2f ms/request",
        script.name, connections, result.get("rps", 0), result.get("p50_ms"),
        result.get("p99_ms"), cpu["server_s"] / done * 1000,
    )  # fmt: skip
    return result


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def wait_for_quiet(max_wait: float = 20.0, limit_cores: float = 0.5) -> dict[str, float]:
    """Wait (at most ``max_wait`` seconds) until the rest of the machine, sampled over one
    second, keeps less than ``limit_cores`` cores busy: other people's test runs on this
    2-core box would otherwise be measured too. Returns what was waited and seen."""
    start = time.monotonic()
    while True:
        busy_0, _ = machine_busy_seconds()
        wall_0 = time.monotonic()
        time.sleep(1.0)
        busy_1, _ = machine_busy_seconds()
        cores = (busy_1 - busy_0) / (time.monotonic() - wall_0)
        waited = time.monotonic() - start
        if cores < limit_cores or waited >= max_wait:
            return {"waited_s": round(waited, 1), "busy_cores_before_start": round(cores, 2)}


class PhaseCpu:
    """CPU seconds of this process, Redis and everything else over a phase."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.wall_0 = time.perf_counter()
        self.busy_0, _ = machine_busy_seconds()
        self.own_0 = _own_cpu_seconds()
        self.redis_0 = redis_cpu_seconds(client)
        self.commands_0 = redis_commands(client)

    def result(self) -> dict[str, float]:
        busy_1, _ = machine_busy_seconds()
        own = _own_cpu_seconds() - self.own_0
        redis_s = redis_cpu_seconds(self.client) - self.redis_0
        return {
            "wall_s": round(time.perf_counter() - self.wall_0, 2),
            "this_process_s": round(own, 2),
            "redis_s": round(redis_s, 2),
            "other_processes_s": round(max(0.0, busy_1 - self.busy_0 - own - redis_s), 2),
            "redis_commands": redis_commands(self.client) - self.commands_0,
        }


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _redis_state(client: redis.Redis) -> dict[str, Any]:
    memory = client.info("memory")
    persistence = client.info("persistence")
    return {
        "used_memory": int(memory["used_memory"]),
        "used_memory_rss": int(memory["used_memory_rss"]),
        "used_memory_human": memory.get("used_memory_human"),
        "keys": int(client.dbsize()),
        "aof_enabled": int(persistence.get("aof_enabled", 0)),
        "aof_current_size": int(persistence.get("aof_current_size", 0) or 0),
    }


def _load_details(
    report: LoadReport, pool: TilePool, before: dict[str, Any], after: dict[str, Any], n: int
) -> dict[str, Any]:
    grew = after["used_memory"] - before["used_memory"]
    return {
        "customers": n,
        "seconds": round(report.seconds, 2),
        "customers_per_second": round(n / report.seconds),
        "tiles": report.tiles_total,
        "tiles_per_customer": {
            "min": TILES_MIN,
            "max": TILES_MAX,
            "mean": round(report.tiles_total / n, 2),
        },
        "events_per_tile_mean": round(float(pool.events.mean()), 2),
        "tile_bytes_mean": round(float(np.mean([len(v) for v in pool.encoded])), 1),
        "pool_tiles": len(pool.encoded),
        "bytes_sent_mb": round(report.bytes_sent / 1e6, 1),
        "mb_per_second": round(report.bytes_sent / 1e6 / report.seconds, 1),
        "python_build_seconds": round(report.python_seconds, 2),
        "waiting_on_redis_seconds": round(report.wait_seconds, 2),
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "used_memory_rss_after": after["used_memory_rss"],
        "used_memory_grew_gib": round(grew / 2**30, 2),
        "redis_bytes_per_customer": round(grew / n),
        "aof_size_after": after["aof_current_size"],
        "verified_read_back": report.verified,
        "how": "raw RESP: per customer one HSET of the scalars field, the 5 score fields and "
        "20-30 day tiles (store encoders); per chunk of 2,000 one ZADD to the risk and "
        "scored_at sorted sets; one connection, pipelined one chunk deep, no MULTI",
    }


def _memory_usage_sample(
    client: redis.Redis, keys: Keys, n: int, rng: np.random.Generator, size: int = 200
) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    for i in rng.integers(0, n, size=size).tolist():
        pipe.memory_usage(keys.customer(customer_id(i)), samples=0)
    sizes = [int(s) for s in pipe.execute() if s is not None]
    return {
        "customer_hash_bytes_mean": round(statistics.fmean(sizes)),
        "customer_hash_bytes_p50": int(np.percentile(sizes, 50)),
        "sampled": len(sizes),
        "encoding": cast(bytes, client.object("encoding", keys.customer(customer_id(0)))).decode(),
    }


AOF_REWRITE_SETTING = "auto-aof-rewrite-percentage"


def suspend_aof_rewrites(client: redis.Redis) -> Callable[[], None] | None:
    """Turn Redis's automatic AOF rewrites off (``auto-aof-rewrite-percentage 0``) for the
    benchmark and return what turns them back on; None when AOF is off, rewrites already
    are, or CONFIG is not allowed. Loading a few GB doubles the AOF again and again: each
    doubling forks a rewrite of the whole dataset (~1 minute of a core for 5 GB here),
    which would compete with the load and the measurements. One rewrite after the keys
    are deleted (cheap then) replaces them all."""
    try:
        if not int(client.info("persistence").get("aof_enabled", 0)):
            return None
        raw = cast(dict[Any, Any], client.config_get(AOF_REWRITE_SETTING))
        value = next(iter(raw.values()), None)
        original = value.decode() if isinstance(value, bytes) else value
        if original is None or original == "0":
            return None
        client.config_set(AOF_REWRITE_SETTING, 0)
    except redis.ResponseError:
        return None

    def restore() -> None:
        client.config_set(AOF_REWRITE_SETTING, original)

    return restore


def _clean_up_redis(
    client: redis.Redis,
    prefix: str,
    n: int,
    details: dict[str, Any],
    restore_rewrites: Callable[[], None] | None,
) -> None:
    """Delete the prefix, let lazy freeing finish, turn automatic AOF rewrites back on and
    compact the AOF if the load grew it."""
    try:
        deleted, seconds = delete_prefix(client, prefix, known=n)
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
    after = _redis_state(client)
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
