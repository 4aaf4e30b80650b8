"""The online store: customers' aggregates and scores in Redis (layout in :mod:`core.keys`).

Conventions: times are epoch seconds (UTC); a tile is stored as msgpack
``[counters (trailing zeros trimmed), packed little-endian uint64 event hashes]``; writes
of one micro-batch — tiles, scalars, scores, the risk and staleness indexes, and the
offset fences of the partitions the batch came from — happen in one MULTI/EXEC that is
refused when any of those fences moved since it was read (another worker took over), so
a batch is applied exactly once. On a Redis Cluster that transaction is one per
partition: a partition's customers, indexes and fences share a hash tag
(:mod:`core.keys`), so each partition's part of a batch is all-or-nothing, which is what
exactly-once needs (fences are per partition).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import numpy as np
import redis

from core import leaderboard
from core.aggregates import N_COUNTERS, CustomerAggregates
from core.keys import SCALARS_FIELD, TILE_PREFIX, Keys
from core.model import BANDS
from core.redis_client import client_is_cluster, get_many
from core.scores import Score

_MSGPACK = msgspec.msgpack.Encoder()
_TILE_PREFIX_BYTES = TILE_PREFIX.encode()
_TILE_PREFIX_LENGTH = len(_TILE_PREFIX_BYTES)
_SCALARS_FIELD_BYTES = SCALARS_FIELD.encode()
_TILE_DAYS: dict[bytes, int] = {}  # field name -> its day, -1 for other fields (a cache)


def _tile_day(name: bytes) -> int:
    """The day of a tile's field name (-1 for other fields), remembered for next time:
    the names a store holds are few (one per day of history, plus the scalars)."""
    day = int(name[_TILE_PREFIX_LENGTH:]) if name.startswith(_TILE_PREFIX_BYTES) else -1
    if len(_TILE_DAYS) < 100_000:
        _TILE_DAYS[name] = day
    return day


_UNPACK = msgspec.msgpack.Decoder()


class FenceMoved(RuntimeError):
    """A partition's fence changed under this batch: another writer applied events."""


@dataclass
class StoredCustomer:
    """A customer read back from the store: aggregates plus the latest score (if any)."""

    aggregates: CustomerAggregates
    score: Score | None


def encode_tile(counts: np.ndarray, hashes: Iterable[int]) -> bytes:
    values = counts.tolist()
    while values and values[-1] == 0:
        values.pop()
    packed = np.fromiter(hashes, dtype="<u8").tobytes()
    return _MSGPACK.encode([values, packed])


def encode_scalars(agg: CustomerAggregates) -> bytes:
    return _MSGPACK.encode(
        [
            agg.first_seen,
            agg.last_event,
            agg.last_activity,
            agg.last_purchase,
            agg.level,
            list(agg.level_key),
        ]
    )


def decode_customer(
    customer_id: str, fields: Mapping[bytes, bytes], with_event_hashes: bool = True
) -> StoredCustomer:
    """Rebuild a customer from the fields of their hash (empty mapping: a new customer).

    Without event hashes (``with_event_hashes=False``) the result is for reading features
    only — much cheaper — and must never be written back.
    """
    return decode_customers([customer_id], [fields], with_event_hashes)[0]


def decode_customers(
    customer_ids: Sequence[str],
    hashes_fields: Sequence[Mapping[bytes, bytes]],
    with_event_hashes: bool = True,
) -> list[StoredCustomer]:
    """:func:`decode_customer` for many customers at once: their tiles are decoded by one
    msgpack call into one counter array (each customer's aggregates hold a slice of it)."""
    days: list[int] = []
    values: list[bytes] = []
    sizes: list[int] = []
    for fields in hashes_fields:
        before = len(days)
        for name, value in fields.items():
            day = _TILE_DAYS.get(name)
            if day is None:
                day = _tile_day(name)
            if day >= 0:
                days.append(day)
                values.append(value)
        sizes.append(len(days) - before)
    tiles: list[list[Any]] = _UNPACK.decode(_msgpack_array(values))  # [[counters, hashes]]
    matrix = _counter_matrix([tile[0] for tile in tiles])
    day_array = np.array(days, dtype=np.int64)
    customers = []
    row = 0
    for customer_id, fields, size in zip(customer_ids, hashes_fields, sizes, strict=True):
        agg = CustomerAggregates(customer_id)
        end = row + size
        hashes = None
        if with_event_hashes:
            hashes = [np.frombuffer(tile[1], dtype="<u8").tolist() for tile in tiles[row:end]]
        agg.load_tiles(day_array[row:end], matrix[row:end], hashes)
        row = end
        scalars = fields.get(_SCALARS_FIELD_BYTES)
        if scalars is not None:
            first, last, activity, purchase, level, level_key = _UNPACK.decode(scalars)
            agg.first_seen, agg.last_event = first, last
            agg.last_activity, agg.last_purchase = activity, purchase
            agg.level, agg.level_key = level, (level_key[0], level_key[1])
        score = None
        if b"score" in fields:
            score = Score(
                customer_id=customer_id,
                score=float(fields[b"score"]),
                band=fields[b"band"].decode(),
                model_version=fields[b"model_version"].decode(),
                scored_at=float(fields[b"scored_at"]),
                last_event_time=int(fields[b"last_event_time"]),
                value=float(fields[b"value"]) if b"value" in fields else None,
            )
        customers.append(StoredCustomer(agg, score))
    return customers


def _msgpack_array(items: Sequence[bytes]) -> bytes:
    """A msgpack array (array 32 header) of already-encoded ``items``."""
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def _counter_matrix(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of counters as an array of shape (rows, N_COUNTERS): short rows (stored with
    trailing zeros trimmed) are padded with zeros; counters beyond N_COUNTERS (written by
    a version that counts more) are left out."""
    n = len(rows)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    total = int(widths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)
    starts = np.cumsum(widths) - widths
    row_of = np.repeat(np.arange(n), widths)
    column_of = np.arange(total) - np.repeat(starts, widths)
    known = column_of < N_COUNTERS
    matrix = np.zeros((n, N_COUNTERS), dtype=np.int64)
    matrix[row_of[known], column_of[known]] = flat[known]
    return matrix


def decode_for_reading(
    customer_ids: Sequence[str], hashes_fields: Sequence[Mapping[bytes, bytes]]
) -> list[StoredCustomer | None]:
    """:func:`decode_customers` without event hashes, None where a hash is empty."""
    decoded = iter(
        decode_customers(
            [c for c, fields in zip(customer_ids, hashes_fields, strict=True) if fields],
            [fields for fields in hashes_fields if fields],
            with_event_hashes=False,
        )
    )
    return [next(decoded) if fields else None for fields in hashes_fields]


def score_fields(score: Score) -> dict[str, str]:
    return {
        "score": repr(score.score),
        "band": score.band,
        "model_version": score.model_version,
        "scored_at": repr(score.scored_at),
        "last_event_time": str(score.last_event_time),
        **({} if score.value is None else {"value": repr(score.value)}),
    }


class FeatureStore:
    """Reads and writes customers, scores and fences in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    # --- reading ----------------------------------------------------------------------

    def load_customers(
        self, customer_ids: Sequence[str], with_event_hashes: bool = True
    ) -> dict[str, StoredCustomer]:
        """Every requested customer (new, empty aggregates for unknown ones), one round trip.
        ``with_event_hashes=False`` reads for features only: see :func:`decode_customer`."""
        pipe = self.redis.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hgetall(self.keys.customer(customer_id))
        results = cast(list[dict[bytes, bytes]], pipe.execute())
        decoded = decode_customers(customer_ids, results, with_event_hashes)
        return dict(zip(customer_ids, decoded, strict=True))

    def load_customer(
        self, customer_id: str, with_event_hashes: bool = False
    ) -> StoredCustomer | None:
        """One customer for reading (features, score), or None when never seen. Event
        hashes are skipped unless asked for: see :func:`decode_customer`."""
        fields = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.customer(customer_id)))
        if not fields:
            return None
        return decode_customer(customer_id, fields, with_event_hashes)

    def read_customers(self, customer_ids: Sequence[str]) -> list[StoredCustomer | None]:
        """Customers for reading, in the order asked (None for one never seen), in one
        round trip; event hashes skipped as in :meth:`load_customer`."""
        return decode_for_reading(customer_ids, self.fetch_customers(customer_ids))

    def fetch_customers(self, customer_ids: Sequence[str]) -> list[dict[bytes, bytes]]:
        """The raw hashes of ``customer_ids`` (empty for one never seen), one round trip:
        the I/O half of :meth:`read_customers`, for callers that decode elsewhere."""
        pipe = self.redis.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hgetall(self.keys.customer(customer_id))
        return cast(list[dict[bytes, bytes]], pipe.execute())

    def read_fences(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Last applied offset per (topic, partition); -1 where nothing was applied."""
        values = get_many(self.redis, [self.keys.fence(t, p) for t, p in partitions])
        return {
            tp: int(v) if v is not None else -1 for tp, v in zip(partitions, values, strict=True)
        }

    def stale_customers(self, scored_before: float, limit: int) -> list[str]:
        """Customers whose latest score is older than ``scored_before``, oldest first."""
        return leaderboard.stale_customers(self.redis, self.keys, scored_before, limit)

    # --- writing ----------------------------------------------------------------------

    def commit_batch(
        self,
        customers: Iterable[CustomerAggregates],
        scores: Sequence[Score],
        fences: Mapping[tuple[str, int], tuple[int, int]],
    ) -> None:
        """Write changed tiles, scalars and scores, and move each fence from its expected
        offset to its new one (``fences[(topic, partition)] = (expected, new)``), atomically.

        Raises :class:`FenceMoved` (writing nothing) when a fence is not at its expected
        offset. Clears each customer's change tracking once written.

        On a cluster, each partition (shard) commits in its own transaction, in partition
        order; :class:`FenceMoved` or a Redis error then means that the partitions before
        the failing one are committed and the others are not.
        """
        customers = list(customers)
        if client_is_cluster(self.redis):
            for _shard, (group, group_scores, group_fences) in self._by_shard(
                customers, scores, fences
            ):
                self._commit(group, group_scores, group_fences)
        else:
            self._commit(customers, scores, fences)
        for agg in customers:
            agg.changed_days.clear()
            agg.dropped_days.clear()

    def _by_shard(
        self,
        customers: Sequence[CustomerAggregates],
        scores: Sequence[Score],
        fences: Mapping[tuple[str, int], tuple[int, int]],
    ) -> list[
        tuple[
            int,
            tuple[list[CustomerAggregates], list[Score], dict[tuple[str, int], tuple[int, int]]],
        ]
    ]:
        """The commit split by shard: (shard, (customers, scores, fences)), shards without
        a fence first (they hold no offset), then by partition."""
        groups: dict[int, tuple[list[CustomerAggregates], list[Score], dict[Any, Any]]] = {}

        def group(shard: int) -> tuple[list[CustomerAggregates], list[Score], dict[Any, Any]]:
            return groups.setdefault(shard, ([], [], {}))

        for agg in customers:
            group(self.keys.shard_of(agg.customer_id))[0].append(agg)
        for score in scores:
            group(self.keys.shard_of(score.customer_id))[1].append(score)
        for tp, moves in fences.items():
            group(tp[1])[2][tp] = moves
        return sorted(groups.items(), key=lambda item: (bool(item[1][2]), item[0]))

    def _commit(
        self,
        customers: Sequence[CustomerAggregates],
        scores: Sequence[Score],
        fences: Mapping[tuple[str, int], tuple[int, int]],
    ) -> None:
        """One transaction: the writes, and the fences moved if they are where expected."""
        fence_keys = {tp: self.keys.fence(*tp) for tp in fences}
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                if fence_keys:
                    pipe.watch(*fence_keys.values())  # type: ignore[no-untyped-call]
                    current = [pipe.get(key) for key in fence_keys.values()]
                    for (tp, (expected, _)), value in zip(fences.items(), current, strict=True):
                        if (int(value) if value is not None else -1) != expected:
                            raise FenceMoved(
                                f"fence of {tp[0]}[{tp[1]}] is at {value!r}, expected {expected}"
                            )
                pipe.multi()
                self._queue_customers(pipe, customers, scores)
                for tp, (_, new) in fences.items():
                    pipe.set(fence_keys[tp], new)
                pipe.execute()
            except redis.WatchError as exc:
                raise FenceMoved(str(exc)) from exc

    def write_scores(self, scores: Sequence[Score]) -> None:
        """Write scores only (the aggregates are unchanged), e.g. re-scoring silent
        customers: one transaction per shard."""
        shards: dict[int, list[Score]] = {}
        for score in scores:
            shards.setdefault(self.keys.shard_of(score.customer_id), []).append(score)
        for group in shards.values():
            with self.redis.pipeline(transaction=True) as pipe:
                self._queue_customers(pipe, [], group)
                pipe.execute()

    def _queue_customers(
        self,
        pipe: redis.client.Pipeline,
        customers: Sequence[CustomerAggregates],
        scores: Sequence[Score],
    ) -> None:
        """One HSET per customer: changed tiles, scalars and the new score together."""
        pending = {score.customer_id: score for score in scores}
        for agg in customers:
            key = self.keys.customer(agg.customer_id)
            mapping: dict[Any, Any] = {SCALARS_FIELD: encode_scalars(agg)}
            for day, counts, hashes in agg.changed_tiles():
                mapping[f"{TILE_PREFIX}{day}"] = encode_tile(counts, hashes)
            score = pending.pop(agg.customer_id, None)
            if score is not None:
                mapping.update(score_fields(score))
            pipe.hset(key, mapping=mapping)
            if agg.dropped_days:
                pipe.hdel(key, *(f"{TILE_PREFIX}{day}" for day in agg.dropped_days))
        for score in pending.values():
            fields: dict[Any, Any] = dict(score_fields(score))
            pipe.hset(self.keys.customer(score.customer_id), mapping=fields)
        self._queue_indexes(pipe, scores)

    def _queue_indexes(self, pipe: redis.client.Pipeline, scores: Sequence[Score]) -> None:
        """Each score into its shard's ``risk``, ``scored_at`` and ``risk:<band>`` sorted
        sets (and out of the other bands' sets): 2 + len(BANDS) commands per shard."""
        by_shard: dict[int, list[Score]] = {}
        for score in scores:
            by_shard.setdefault(self.keys.shard_of(score.customer_id), []).append(score)
        for shard, group in by_shard.items():
            pipe.zadd(self.keys.risk(shard), {s.customer_id: s.score for s in group})
            pipe.zadd(self.keys.scored_at(shard), {s.customer_id: s.scored_at for s in group})
            for band in BANDS:
                members = [s for s in group if s.band == band]
                others = [s.customer_id for s in group if s.band != band]
                if members:
                    pipe.zadd(
                        self.keys.risk_band(shard, band), {s.customer_id: s.score for s in members}
                    )
                if others:
                    pipe.zrem(self.keys.risk_band(shard, band), *others)
