"""The outbox: a batch's output records, kept in Redis by the batch's own commit.

A micro-batch's dead letters (``events-dlq``) and band changes (``churn-scores``) are not
sent to Kafka before the batch commits. They are written into the commit itself (the
fenced Lua script of :mod:`core.store`), per Kafka partition, as one outbox **entry**,
then delivered to Kafka after the commit (``stream.delivery``). So a commit that is
refused (another worker moved a fence) publishes nothing, and a crash anywhere leaves the
records either not committed (the batch is applied again and makes them again) or
committed and waiting in the outbox for whoever owns the partition next.

Layout (key names in :mod:`core.keys`): partition ``p``'s outbox is a sorted set whose
score is the entry's **sequence number** (1, 2, 3, ... per partition, counted in
``outbox:seq`` by the commit script, and never below the delivered mark the worker passes:
should Redis lose committed writes, new entries still follow what Kafka has; records of
the lost batches are then published again when those batches are applied again) and
whose member is the msgpack array
``[seq, [[topic, key, value, headers], ...]]`` (``key``: bytes or nil; ``headers``:
``[[name, bytes], ...]`` or nil). A dead letter belongs to the partition of the message
it rejects, a band change to its customer's partition (:meth:`core.keys.Keys.shard_of`),
so an entry lives in the same hash slot as the fences it commits with.

Entries below the delivered mark (the next sequence number to publish) that the worker
passes with its next commit of that partition are trimmed by that commit.

**Ownership.** A worker that takes a partition over writes a fresh random **owner token**
into ``owner`` (:func:`claim_partition`), and each of its commits of that partition
carries the token (:class:`OutboxAppend`): the commit script refuses a commit whose token
is not the one held. So once a partition is taken over, nothing a worker that lost it
without noticing yet made from the state it held is committed, not even a commit that
moves no fence (the re-scoring of silent customers), which the fences alone could not
tell apart. (Such a worker drops that state. The batch engine then reads the partition
again once the group has told it whose it is; the faust engine takes it over again at
once, with a new token, from what Redis holds.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import msgspec
import redis

from core.dlq import DeadLetter
from core.keys import Keys
from core.scores import BandChange, encode_band_change

Headers = list[tuple[str, bytes]]


class OutboxRecord(msgspec.Struct, array_like=True, frozen=True):
    """One Kafka record to publish: ``[topic, key, value, headers]`` on the wire."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


class OutboxEntry(msgspec.Struct, array_like=True, frozen=True):
    """One committed entry: the records one commit wrote for one partition."""

    seq: int
    records: list[OutboxRecord]


@dataclass(frozen=True)
class OutboxAppend:
    """What one commit does to a partition's outbox: append ``records`` (encoded by
    :func:`encode_records`; empty: append nothing) as the next entry, and trim the
    entries whose sequence number is below ``delivered_below`` (known delivered). The
    commit is refused unless the partition's owner token is ``owner`` (empty: not checked;
    see :func:`claim_partition`)."""

    records: bytes
    delivered_below: int
    owner: bytes = b""


_ENCODER = msgspec.msgpack.Encoder()
_ENTRY = msgspec.msgpack.Decoder(OutboxEntry)


def claim_partition(client: redis.Redis, keys: Keys, partition: int) -> bytes:
    """Make this caller the owner of ``partition``'s commits: write a fresh random token
    (16 bytes) as the partition's owner and return it. Commits carrying an earlier
    owner's token are refused from here on (module docstring)."""
    token = os.urandom(16)
    client.set(keys.owner(partition), token)
    return token


def dead_letter_record(topic: str, letter: DeadLetter) -> OutboxRecord:
    """``letter`` as its ``events-dlq`` record (``topic``): the original key and bytes,
    the reason in headers (:mod:`core.dlq`)."""
    headers = [(name, value or b"") for name, value in letter.headers()]
    return OutboxRecord(topic, letter.key, letter.value, cast(Headers, headers))


def band_change_record(topic: str, change: BandChange) -> OutboxRecord:
    """``change`` as its ``churn-scores`` record (``topic``), keyed by customer id."""
    return OutboxRecord(topic, change.customer_id.encode(), encode_band_change(change))


def encode_records(records: Sequence[OutboxRecord]) -> bytes:
    """The records of one entry as the commit script stores them (b"" when none).

    >>> encode_records([])
    b''
    >>> entry = decode_entry(b"\\x92\\x07" + encode_records([OutboxRecord("t", b"k", b"v")]))
    >>> entry.seq, entry.records[0].topic, entry.records[0].value
    (7, 't', b'v')
    """
    if not records:
        return b""
    return _ENCODER.encode(list(records))


def decode_entry(member: bytes) -> OutboxEntry:
    """An outbox member (``[seq, records]`` msgpack, as the commit script builds it)."""
    return _ENTRY.decode(member)


def read_entries(client: redis.Redis, keys: Keys, partition: int, first: int) -> list[OutboxEntry]:
    """Partition ``partition``'s outbox entries with sequence number ``first`` or more,
    in sequence order (one round trip)."""
    members = cast(list[bytes], client.zrangebyscore(keys.outbox(partition), first, "+inf"))
    return [decode_entry(member) for member in members]
