"""The API benchmark's state loader: a million customers' Redis state, written fast
(raw RESP in chunks on one connection per Redis node), and its clean-up (see
:mod:`bench.api_bench` for what it writes)."""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis
from redis.cluster import RedisCluster

from core.aggregates import COUNTERS, DAY_SECONDS, HASH_BITS, NEVER, C, CustomerAggregates
from core.customer_encoding import decode_customer, encode_scalars, encode_tile
from core.keys import SCALARS_FIELD, TILE_PREFIX, Keys
from core.model import BANDS, LinearModel
from core.redis_client import client_is_cluster
from core.scores import Score
from core.store import FeatureStore, score_fields

log = logging.getLogger("bench.api")

REPO_ROOT = Path(__file__).resolve().parents[1]

POOL_TILES = 8192  # distinct tiles customers draw from
CHUNK = 2000  # customers per pipelined write
TILES_MIN, TILES_MAX = 20, 30  # tiles per customer, inclusive
WINDOW_DAYS = 90  # a customer's tiles lie in the 90 days up to their last active day
LAST_ACTIVE_MAX_DAYS_AGO = 29
VERIFY_CUSTOMERS = 5
DELETE_BATCH = 5000


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
            digests = rng.integers(0, 2**HASH_BITS, size=n, dtype=np.int64).tolist()
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
    index_keys = [
        (_bulk(keys.risk(s).encode()), _bulk(keys.scored_at(s).encode()),
         {band: _bulk(keys.risk_band(s, band).encode()) for band in BANDS})
        for s in keys.shards
    ]  # fmt: skip
    connections, connection_of_shard, release = _node_connections(client, keys)
    pending = [0] * len(connections)  # replies of the chunk sent before, still to read

    def send(data: list[bytes], replies: list[int]) -> None:
        """In the sender thread: write one chunk to each node (the socket write releases
        the GIL, so the next chunk is built meanwhile), then read the previous chunk's
        replies."""
        for i, connection in enumerate(connections):
            if data[i]:
                connection.send_packed_command([data[i]], check_health=False)
            _read_replies(connection, pending[i])
            pending[i] = replies[i]

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
            out: list[list[bytes]] = [[] for _ in connections]
            replies = [0] * len(connections)
            risk_args: list[list[bytes]] = [[] for _ in keys.shards]
            scored_args: list[list[bytes]] = [[] for _ in keys.shards]
            band_args: list[dict[str, list[bytes]]] = [
                {band: [] for band in BANDS} for _ in keys.shards
            ]
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
                    parts.append(_bulk(value))
                pairs: list[bytes] = [b""] * (2 * k)
                pairs[0::2] = itemgetter(*day_idx)(day_fields)
                pairs[1::2] = itemgetter(*tiles)(pool.resp)
                parts += pairs
                shard = keys.shard_of(cid)
                out[connection_of_shard[shard]].append(b"".join(parts))
                replies[connection_of_shard[shard]] += 1
                member = _bulk(cid.encode())
                score_arg = _bulk(repr(score.score).encode())
                risk_args[shard] += (score_arg, member)
                band_args[shard][score.band] += (score_arg, member)
                scored_args[shard] += (_bulk(repr(score.scored_at).encode()), member)
                tiles_total += k
                if i in verify_at:
                    days = [day0 + d for d in day_idx]
                    expected[cid] = _aggregates_of(cid, days, tiles, pool, scalars)
            for shard, (risk_key, scored_key, band_keys) in enumerate(index_keys):
                node = connection_of_shard[shard]
                for key, args in [
                    (risk_key, risk_args[shard]),
                    (scored_key, scored_args[shard]),
                    *((band_keys[band], band_args[shard][band]) for band in BANDS),
                ]:
                    if args:
                        out[node].append(b"*%d\r\n" % (2 + len(args)) + zadd + key + b"".join(args))
                        replies[node] += 1
            data = [b"".join(parts) for parts in out]
            t1 = time.perf_counter()
            python_s += t1 - t0
            while len(in_flight) >= 2:  # at most two chunks queued behind the socket
                in_flight.popleft().result()
            in_flight.append(sender.submit(send, data, replies))
            bytes_sent += sum(map(len, data))
            wait_s += time.perf_counter() - t1
        t1 = time.perf_counter()
        while in_flight:
            in_flight.popleft().result()
        for i, connection in enumerate(connections):
            sender.submit(_read_replies, connection, pending[i]).result()
        wait_s += time.perf_counter() - t1
    except BaseException:
        for future in in_flight:
            future.cancel()
        sender.shutdown(wait=True)
        for connection in connections:
            connection.disconnect()
        raise
    finally:
        sender.shutdown(wait=True)
        release()
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


def _node_connections(
    client: redis.Redis, keys: Keys
) -> tuple[list[Any], list[int], Callable[[], None]]:
    """One connection per Redis node holding a shard: (the connections, each shard's
    connection index, a function that gives them back). A single server: one."""
    if not client_is_cluster(client):
        connection = client.connection_pool.get_connection()
        return (
            [connection],
            [0] * keys.partitions,
            lambda: client.connection_pool.release(connection),
        )
    cluster = cast(RedisCluster, client)
    pools: dict[str, Any] = {}
    connections: list[Any] = []
    of_shard = []
    for shard in keys.shards:
        node = cluster.get_node_from_key(keys.risk(shard))
        if node.name not in pools:
            pool = cast(redis.Redis, node.redis_connection).connection_pool
            pools[node.name] = pool
            connections.append(pool.get_connection())
        of_shard.append(list(pools).index(node.name))

    def release() -> None:
        for pool, connection in zip(pools.values(), connections, strict=True):
            pool.release(connection)

    return connections, of_shard, release


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


def delete_prefix(client: redis.Redis, keys: Keys, known: int = 0) -> tuple[int, float]:
    """UNLINK every key under ``keys.prefix:``; (keys deleted, seconds). The ``known``
    customers (``customer_id(0..known-1)``) go first by name, in batches (on a cluster,
    one UNLINK per slot of a batch); then SCAN finds whatever else is there (cheap once the
    keyspace is small again)."""
    start = time.perf_counter()
    deleted = 0
    for first in range(0, known, DELETE_BATCH):
        last = min(known, first + DELETE_BATCH)
        deleted += int(client.unlink(*(keys.customer(customer_id(i)) for i in range(first, last))))
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=DELETE_BATCH):
        batch.append(cast(bytes, key))
        if len(batch) >= DELETE_BATCH:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
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


def load_details(
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


def memory_usage_sample(
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
