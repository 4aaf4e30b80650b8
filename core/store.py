"""The online store: customers' aggregates and scores in Redis (layout in :mod:`core.keys`).

Conventions: times are epoch seconds (UTC); a customer's hash fields are encoded as
:mod:`core.customer_encoding` says; writes of one micro-batch — tiles, scalars, scores,
the risk and staleness indexes, the offset fences of the partitions the batch came from,
and its output records (each partition's outbox, :mod:`core.outbox`) — happen in one Lua
script that refuses them all when any of those fences is not where the batch expects it
(another worker took over), so a batch is applied exactly once. On a Redis Cluster the
script runs once per partition: a partition's customers, sorted sets and fences share a
hash tag (:mod:`core.keys`), so each partition's part of a batch is all-or-nothing, which
is what exactly-once needs (fences are per partition).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis

from core import leaderboard
from core.aggregates import CustomerAggregates
from core.customer_encoding import (
    StoredCustomer,
    changed_fields,
    decode_customer,
    decode_customers,
    decode_for_reading,
    encode_score,
)
from core.keys import SCORE_FIELD, Keys
from core.model import BANDS
from core.outbox import OutboxAppend
from core.redis_client import client_is_cluster, get_many
from core.score_reads import ScoreReads
from core.scores import Score

_MSGPACK = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class PreparedCommit:
    """A batch's writes, encoded for the commit script (see FeatureStore.prepare_commit)."""

    customers: list[CustomerAggregates]
    writes: dict[int | None, bytes]  # shard -> its writes; None: every shard (one server)

    def mark_written(self) -> None:
        """Clear the customers' change tracking: what changed is in :attr:`writes`."""
        for agg in self.customers:
            agg.mark_written()


class FenceMoved(RuntimeError):
    """A partition's fence changed under this batch: another writer applied events."""


class OwnerMoved(FenceMoved):
    """Another worker took a partition of this commit over (its owner token is not the
    one the commit carries, :func:`core.outbox.claim_partition`); nothing was written."""


# For each band, the other bands (a score is removed from their sets).
_OTHER_BANDS = {band: [other for other in BANDS if other != band] for band in BANDS}


_MAX_ARGS = 4000  # per command the commit script runs (Lua's unpack() takes up to ~8000)


def _chunks(command: list[Any], pair: int) -> list[list[Any]]:
    """``command`` ([key, arg, arg, ...]) split into commands of at most ``_MAX_ARGS``
    arguments, each with the key, without splitting a group of ``pair`` arguments."""
    if len(command) <= _MAX_ARGS:
        return [command]
    step = _MAX_ARGS - _MAX_ARGS % pair
    key, rest = command[0], command[1:]
    return [[key, *rest[i : i + step]] for i in range(0, len(rest), step)]


def _lua_string(value: bytes) -> msgspec.Raw:
    """``value`` as a msgpack *str* (Redis's Lua msgpack decoder knows no *bin* type; a
    Lua string holds any bytes)."""
    n = len(value)
    if n < 256:
        header = b"\xd9" + n.to_bytes(1, "big")
    elif n < 65536:
        header = b"\xda" + n.to_bytes(2, "big")
    else:
        header = b"\xdb" + n.to_bytes(4, "big")
    return msgspec.Raw(header + value)


_FENCE_MOVED = "FENCE_MOVED"
_OWNER_MOVED = "OWNER_MOVED"
# KEYS: the n fences, then the m outboxes' sequence, entry and owner keys (triples), then
# one key of the shard (so that a cluster runs the script where the shard lives); ARGV:
# n, the expected fences, the new fences, the writes (msgpack: [HSET, HDEL, ZADD, ZREM
# argument lists]; see FeatureStore._writes), m, then per outbox its encoded records
# (empty: none), the sequence number below which its entries are delivered and the owner
# token the commit carries (empty: not checked) (core.outbox). Returns the sequence
# number given to each outbox's new entry (0: none), in KEYS order.
_COMMIT_LUA = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local held = redis.call('GET', KEYS[i])
  if (held and tonumber(held) or -1) ~= tonumber(ARGV[i + 1]) then
    return redis.error_reply('FENCE_MOVED fence ' .. KEYS[i] .. ' is at ' ..
      tostring(held) .. ', expected ' .. ARGV[i + 1])
  end
end
local m = tonumber(ARGV[2 * n + 3])
for j = 1, m do
  local token = ARGV[2 * n + 3 * j + 3]
  if token ~= '' and redis.call('GET', KEYS[n + 3 * j]) ~= token then
    return redis.error_reply('OWNER_MOVED ' .. KEYS[n + 3 * j] ..
      ' was taken over by another worker')
  end
end
local writes = cmsgpack.unpack(ARGV[2 * n + 2])
for _, args in ipairs(writes[1]) do redis.call('HSET', unpack(args)) end
for _, args in ipairs(writes[2]) do redis.call('HDEL', unpack(args)) end
for _, args in ipairs(writes[3]) do redis.call('ZADD', unpack(args)) end
for _, args in ipairs(writes[4]) do redis.call('ZREM', unpack(args)) end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[n + i + 1]) end
local seqs = {}
for j = 1, m do
  local seq_key, box = KEYS[n + 3 * j - 2], KEYS[n + 3 * j - 1]
  local records, below = ARGV[2 * n + 3 * j + 1], ARGV[2 * n + 3 * j + 2]
  redis.call('ZREMRANGEBYSCORE', box, '-inf', '(' .. below)
  seqs[j] = 0
  if records ~= '' then
    -- never below the delivered mark, even if Redis lost the counter (core.outbox)
    local held = tonumber(redis.call('GET', seq_key) or '0')
    local seq = math.max(held, tonumber(below) - 1) + 1
    redis.call('SET', seq_key, seq)
    -- the member is the msgpack array [seq, records] (0x92: an array of two)
    redis.call('ZADD', box, seq, '\\146' .. cmsgpack.pack(seq) .. records)
    seqs[j] = seq
  end
end
return seqs
"""


# KEYS: customer hashes; returns each one's HGETALL (field, value, ...), in KEYS order.
_LOAD_LUA = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out
"""


def score_fields(score: Score) -> dict[str, bytes]:
    """The fields of a customer's hash that hold ``score`` (field names in :mod:`core.keys`)."""
    return {SCORE_FIELD: encode_score(score)}


class FeatureStore:
    """Reads and writes customers, scores and fences in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self.scores = ScoreReads(client, keys)  # rankings, band counts, stored fields
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._load_script = client.register_script(_LOAD_LUA)

    def load_scripts(self) -> None:
        """Load the store's Lua scripts into Redis now (``SCRIPT LOAD``). They are loaded on
        first use anyway; loading them ahead lets a caller hold Redis's writes (``CLIENT
        PAUSE ... WRITE`` also holds ``SCRIPT LOAD``) while reads, loads included, go on."""
        for script in (self._commit_script, self._load_script):
            self.redis.script_load(script.script)

    # --- reading ----------------------------------------------------------------------

    def load_customers(
        self, customer_ids: Sequence[str], with_event_hashes: bool = True
    ) -> dict[str, StoredCustomer]:
        """Every requested customer (new, empty aggregates for unknown ones), one round trip
        (on a cluster, one per shard). ``with_event_hashes=False`` reads for features only:
        see :func:`decode_customer`.

        One ``EVALSHA`` returns every hash (a pipeline of ``HGETALL`` cost redis-py ~15 µs
        of Python per customer; this costs ~2 µs plus the decoding)."""
        if not customer_ids:
            return {}
        groups: list[list[str]] = [list(customer_ids)]
        if client_is_cluster(self.redis):  # a script's keys must share one slot
            by_shard: dict[int, list[str]] = {}
            for customer_id in customer_ids:
                by_shard.setdefault(self.keys.shard_of(customer_id), []).append(customer_id)
            groups = list(by_shard.values())
        ordered: list[str] = []
        results: list[dict[bytes, bytes]] = []
        for group in groups:
            flat = cast(
                list[list[bytes]],
                self._load_script(keys=[self.keys.customer(c) for c in group]),
            )
            ordered += group
            results += [dict(zip(items[::2], items[1::2], strict=True)) for items in flat]
        decoded = decode_customers(ordered, results, with_event_hashes)
        return dict(zip(ordered, decoded, strict=True))

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

    def stale_customers(
        self, scored_before: float, limit: int, shards: Iterable[int] | None = None
    ) -> list[str]:
        """Up to ``limit`` customers whose latest score is older than ``scored_before``,
        oldest first, of ``shards`` (partitions; default: all)."""
        return leaderboard.stale_customers(self.redis, self.keys, scored_before, limit, shards)

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

        On a cluster the script runs once per partition (shard), in partition order;
        :class:`FenceMoved` or a Redis error then means that the partitions before the
        failing one are committed and the others are not (each one all-or-nothing).

        One ``EVALSHA`` of :data:`_COMMIT_LUA` does it all: the script checks the fences,
        then applies the writes, which travel as one msgpack argument (encoded in one C
        call, where a MULTI/EXEC of per-customer ``HSET`` commands cost redis-py ~1.5 µs
        per argument to pack). Lua scripts run atomically, and Redis persists and
        replicates a script's writes as one MULTI/EXEC block.
        """
        self.commit_prepared(self.prepare_commit(customers, scores), fences)

    def prepare_commit(
        self, customers: Iterable[CustomerAggregates], scores: Sequence[Score]
    ) -> PreparedCommit:
        """The first half of :meth:`commit_batch`: encode the writes (CPU only, no I/O),
        e.g. while waiting for Kafka to acknowledge the batch's records. On a cluster,
        one set of writes per shard."""
        customers = list(customers)
        if not client_is_cluster(self.redis):
            return PreparedCommit(
                customers, {None: _MSGPACK.encode(self._writes(customers, scores))}
            )
        shards: dict[int, tuple[list[CustomerAggregates], list[Score]]] = {}
        for agg in customers:
            shards.setdefault(self.keys.shard_of(agg.customer_id), ([], []))[0].append(agg)
        for score in scores:
            shards.setdefault(self.keys.shard_of(score.customer_id), ([], []))[1].append(score)
        writes: dict[int | None, bytes] = {
            shard: _MSGPACK.encode(self._writes(*shards[shard])) for shard in sorted(shards)
        }
        return PreparedCommit(customers, writes)

    def commit_prepared(
        self,
        prepared: PreparedCommit,
        fences: Mapping[tuple[str, int], tuple[int, int]],
        outbox: Mapping[int, OutboxAppend] | None = None,
        mark_written: bool = True,
    ) -> dict[int, int]:
        """The second half of :meth:`commit_batch`: one round trip (on a cluster, one per
        partition with writes or a fence to move).

        Once committed, the customers' change tracking is cleared (``mark_written``). A
        caller that goes on changing the same customers while this runs (on another thread)
        clears it itself when it prepares the commit, and must drop those customers if the
        commit fails.

        ``outbox`` (partition -> :class:`~core.outbox.OutboxAppend`) adds each partition's
        output records to its outbox in the same script, after the fence check (a refused
        commit writes none of them), and trims its delivered entries. The whole commit is
        refused with :class:`OwnerMoved` when a partition's owner token is not the one its
        append carries (another worker took it over). Only partitions whose fence this
        commit moves take part. Returns the sequence number given to each
        partition's new entry (partitions without records are left out)."""
        appends = {p: a for p, a in (outbox or {}).items() if any(tp[1] == p for tp in fences)}
        given: dict[int, int] = {}
        if None in prepared.writes:
            given = self._run_commit(0, list(fences), fences, prepared.writes[None], appends)
        else:
            by_shard: dict[int, list[tuple[str, int]]] = {}
            for tp in fences:
                by_shard.setdefault(tp[1], []).append(tp)
            empty = _MSGPACK.encode([[], [], [], []])
            for shard in sorted(set(by_shard) | {s for s in prepared.writes if s is not None}):
                writes = prepared.writes.get(shard, empty)
                mine = {shard: appends[shard]} if shard in appends else {}
                given.update(self._run_commit(shard, by_shard.get(shard, []), fences, writes, mine))
        if mark_written:
            prepared.mark_written()
        return given

    def _run_commit(
        self,
        shard: int,
        tp_order: Sequence[tuple[str, int]],
        fences: Mapping[tuple[str, int], tuple[int, int]],
        writes: bytes,
        outbox: Mapping[int, OutboxAppend],
    ) -> dict[int, int]:
        """One EVALSHA of :data:`_COMMIT_LUA`: ``writes``, the moves of ``tp_order``'s
        fences and the ``outbox`` appends, routed to ``shard``'s node; returns the sequence
        number of each new outbox entry."""
        boxes = sorted(outbox)
        keys = [self.keys.fence(*tp) for tp in tp_order]
        keys += [
            k
            for p in boxes
            for k in (self.keys.outbox_seq(p), self.keys.outbox(p), self.keys.owner(p))
        ]
        keys.append(self.keys.risk(shard))
        args: list[Any] = [len(tp_order)]
        args += [fences[tp][0] for tp in tp_order]
        args += [fences[tp][1] for tp in tp_order]
        args.append(writes)
        args.append(len(boxes))
        for p in boxes:
            args += [outbox[p].records, outbox[p].delivered_below, outbox[p].owner]
        try:
            seqs = cast(list[int], self._commit_script(keys=keys, args=args))
        except redis.ResponseError as exc:
            if str(exc).startswith(_FENCE_MOVED):
                raise FenceMoved(str(exc)) from exc
            if str(exc).startswith(_OWNER_MOVED):
                raise OwnerMoved(str(exc)) from exc
            raise
        return {p: int(seq) for p, seq in zip(boxes, seqs, strict=True) if int(seq) > 0}

    def _writes(
        self, customers: Sequence[CustomerAggregates], scores: Sequence[Score]
    ) -> list[list[list[Any]]]:
        """The commands of a commit, for :data:`_COMMIT_LUA`: [HSET argument lists, HDEL
        argument lists, ZADD argument lists, ZREM argument lists], each list at most
        ``_MAX_ARGS`` long. A score goes into its shard's ``risk``, ``scored_at`` and
        ``risk:<band>`` sorted sets, and out of the other bands' sets.

        Cost: about 8 µs of Python per customer (its key, scalars, changed tiles and
        score fields; the sorted-set arguments grouped by shard), the batch's hot path
        when every customer of it has a single event: the loop avoids per-customer
        helper calls and formats each number once."""
        hsets: list[list[Any]] = []
        hdels: list[list[Any]] = []
        zadds: list[list[Any]] = []
        zrems: list[list[Any]] = []
        pending = {score.customer_id: score for score in scores}
        customer_key = self.keys.customer
        for agg in customers:
            customer_id = agg.customer_id
            key = customer_key(customer_id)
            fields: list[Any] = [key]
            to_set, to_delete = changed_fields(agg)
            for name, value in to_set:
                fields += (name, _lua_string(value))
            score = pending.pop(customer_id, None)
            if score is not None:
                fields += (SCORE_FIELD, _lua_string(encode_score(score)))
            if to_delete:
                hdels.extend(_chunks([key, *to_delete], 1))
            hsets.extend(_chunks(fields, 1))
        for score in pending.values():
            hsets.append(
                [customer_key(score.customer_id), SCORE_FIELD, _lua_string(encode_score(score))]
            )
        by_shard: dict[int, list[Score]] = {}
        shard_of = self.keys.shard_of
        for score in scores:
            by_shard.setdefault(shard_of(score.customer_id), []).append(score)
        for shard, group in by_shard.items():
            risk: list[Any] = [self.keys.risk(shard)]
            scored_at: list[Any] = [self.keys.scored_at(shard)]
            bands: dict[str, list[Any]] = {b: [self.keys.risk_band(shard, b)] for b in BANDS}
            others: dict[str, list[Any]] = {b: [self.keys.risk_band(shard, b)] for b in BANDS}
            for score in group:
                customer_id, text = score.customer_id, repr(score.score)
                risk += (text, customer_id)
                scored_at += (repr(score.scored_at), customer_id)
                bands[score.band] += (text, customer_id)
                for other in _OTHER_BANDS[score.band]:
                    others[other].append(customer_id)
            zadds.extend(_chunks(risk, 2))
            zadds.extend(_chunks(scored_at, 2))
            for band in BANDS:
                if len(bands[band]) > 1:
                    zadds.extend(_chunks(bands[band], 2))
                if len(others[band]) > 1:
                    zrems.extend(_chunks(others[band], 1))
        return [hsets, hdels, zadds, zrems]

    def write_scores(self, scores: Sequence[Score]) -> None:
        """Write scores only (the aggregates are unchanged), e.g. re-scoring silent customers."""
        self.commit_batch([], scores, {})
