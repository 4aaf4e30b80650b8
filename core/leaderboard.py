"""Reads over every shard's risk and staleness indexes, merged (layout in :mod:`core.keys`).

Each shard (Kafka partition) keeps its customers in three kinds of sorted set: by latest
score (``risk``), by score within their stored band (``risk:<band>``) and by time of
latest score (``scored_at``). A question about all customers asks every shard in one
pipelined round trip per Redis node and merges the answers:

* a page of the ranking reads the top ``offset + limit`` of each shard and merges them,
  so it is exactly ranked (ties by customer id, descending, as Redis orders them) and
  costs O(shards x (log n + offset + limit)) on the servers;
* a count is the sum of the shards' ``ZCARD`` / ``ZCOUNT`` (O(shards x log n)).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import cast

import redis

from core.keys import Keys

Ranked = tuple[bytes, float]  # (customer id, score)


def _rank_key(item: Ranked) -> tuple[float, bytes]:
    return item[1], item[0]


def merge_ranked(pages: Iterable[Sequence[Ranked]], offset: int, limit: int) -> list[Ranked]:
    """Items ``[offset, offset + limit)`` of the merge of descending ``pages`` (each as
    ``ZREVRANGE ... WITHSCORES`` returns it: score descending, then id descending).

    >>> merge_ranked([[(b"a", 0.9), (b"c", 0.5)], [(b"b", 0.7), (b"d", 0.5)]], 1, 2)
    [(b'b', 0.7), (b'd', 0.5)]
    """
    merged = heapq.merge(*pages, key=_rank_key, reverse=True)
    return list(_slice(merged, offset, offset + limit))


def _slice(items: Iterable[Ranked], start: int, stop: int) -> Iterable[Ranked]:
    for index, item in enumerate(items):
        if index >= stop:
            return
        if index >= start:
            yield item


def ranking_key(keys: Keys, shard: int, band: str | None) -> str:
    """The sorted set of ``shard`` to rank from: all its scores, or one band's."""
    return keys.risk(shard) if band is None else keys.risk_band(shard, band)


def top_page(
    client: redis.Redis, keys: Keys, band: str | None, offset: int, limit: int
) -> tuple[int, list[Ranked]]:
    """(customers ranked, the page ``[offset, offset + limit)`` of them by stored score,
    highest first), optionally only those whose stored band is ``band``."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards:
        name = ranking_key(keys, shard, band)
        pipe.zcard(name)
        pipe.zrevrange(name, 0, offset + limit - 1, withscores=True)
    results = pipe.execute()
    total = sum(int(n) for n in results[0::2])
    pages = cast(list[list[Ranked]], results[1::2])
    return total, merge_ranked(pages, offset, limit)


def count_scores(
    client: redis.Redis, keys: Keys, ranges: Sequence[tuple[object, object]]
) -> list[int]:
    """Per ``(min, max)`` range (``ZCOUNT`` syntax), the customers whose latest score lies
    in it, over every shard; plus nothing else (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards:
        for low, high in ranges:
            pipe.zcount(keys.risk(shard), low, high)  # type: ignore[arg-type]
    results = pipe.execute()
    width = len(ranges)
    return [sum(int(results[s * width + i]) for s in keys.shards) for i in range(width)]


def scored_customers(client: redis.Redis, keys: Keys) -> int:
    """How many customers have a stored score (sum of the shards' ``ZCARD``)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards:
        pipe.zcard(keys.risk(shard))
    return sum(int(n) for n in pipe.execute())


def scored_between(client: redis.Redis, keys: Keys, low: object, high: object) -> list[str]:
    """Ids of the customers whose latest score was written in ``[low, high]`` (``ZRANGEBYSCORE``
    syntax, e.g. ``"(123.5"`` for an open bound), oldest first."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards:
        pipe.zrangebyscore(keys.scored_at(shard), low, high, withscores=True)  # type: ignore[arg-type]
    pages = cast(list[list[Ranked]], pipe.execute())
    merged = heapq.merge(*pages, key=_rank_key)
    return [member.decode() for member, _ in merged]


def stale_customers(
    client: redis.Redis,
    keys: Keys,
    scored_before: float,
    limit: int,
    shards: Iterable[int] | None = None,
) -> list[str]:
    """Up to ``limit`` customers whose latest score is older than ``scored_before``, oldest
    first, over ``shards`` (default: every shard)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards if shards is None else sorted(set(shards)):
        pipe.zrangebyscore(keys.scored_at(shard), "-inf", scored_before, 0, limit, withscores=True)
    pages = cast(list[list[Ranked]], pipe.execute())
    merged = heapq.merge(*pages, key=_rank_key)
    return [member.decode() for member, _ in _slice(merged, 0, limit)]


def all_scores(client: redis.Redis, keys: Keys) -> list[Ranked]:
    """Every customer's latest stored score (shard after shard; unordered overall)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards:
        pipe.zrange(keys.risk(shard), 0, -1, withscores=True)
    return [item for page in cast(list[list[Ranked]], pipe.execute()) for item in page]


def scores_of(client: redis.Redis, keys: Keys, customer_ids: Sequence[str]) -> list[float | None]:
    """The latest stored score of each customer (None when none), in order."""
    pipe = client.pipeline(transaction=False)
    for customer_id in customer_ids:
        pipe.zscore(keys.risk(keys.shard_of(customer_id)), customer_id)
    return cast(list[float | None], pipe.execute())


def scored_at_of(
    client: redis.Redis, keys: Keys, customer_ids: Sequence[str]
) -> list[float | None]:
    """The time of each customer's latest stored score (None when none), in order."""
    pipe = client.pipeline(transaction=False)
    for customer_id in customer_ids:
        pipe.zscore(keys.scored_at(keys.shard_of(customer_id)), customer_id)
    return cast(list[float | None], pipe.execute())
