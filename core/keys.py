"""The Redis key layout, in one place. Every key starts with ``CHURN_REDIS_KEY_PREFIX``.

The online state is split into **shards, one per Kafka partition** of the input topics
(``CHURN_TOPIC_PARTITIONS`` of them). A customer belongs to the partition their events
arrive on: ``crc32(customer_id) % partitions``, the rule of librdkafka's default
partitioner (``consistent_random``), which churnstream's producer, ``kcat`` and every
librdkafka client use. A shard's keys carry its partition number as their Redis Cluster
hash tag (``{<n>}``), so they all live in one hash slot: a micro-batch from partition
``n`` (its customers, its indexes and the fences of ``n`` in both input topics) commits
in one transaction or Lua script, on a single server and on a cluster alike.

=========================================  ==============================================
key                                        holds
=========================================  ==============================================
``{p}:{<n>}:c:<customer>``                 hash: one customer — day tiles ``d:<day>``
                                           (the dedup window) and full pages of their event
                                           hashes ``h:<day>:<page>``, older tiles sealed
                                           into ``s``, scalars ``m``, and the latest score
                                           ``r``
``{p}:{<n>}:risk``                         sorted set: shard ``n``'s customers by latest
                                           score
``{p}:{<n>}:risk:<band>``                  sorted set: those whose stored band is
                                           ``<band>`` (low, medium, high), by score
``{p}:{<n>}:scored_at``                    sorted set: shard ``n``'s customers by time of
                                           latest score
``{p}:{<n>}:fence:<topic>``                string: last offset applied from ``<topic>``'s
                                           partition ``n``
``{p}:{<n>}:outbox``                       sorted set: partition ``n``'s output records
                                           (dead letters, band changes) committed with
                                           their batch and not yet known delivered; score:
                                           the entry's sequence number (:mod:`core.outbox`)
``{p}:{<n>}:outbox:seq``                   string: the last sequence number given to an
                                           entry of partition ``n``'s outbox
``{p}:{<n>}:owner``                        string: the token of the worker that took
                                           partition ``n`` over last; a commit of ``n``
                                           carrying another token is refused
``{p}:decisions``                          list: retraining decisions (JSON), newest first
``{p}:retrain:requests``                   list: pending retrain requests (JSON)
``{p}:retrain:cooldown``                   string: set (with an expiry) when a trigger asked
                                           for a retrain; triggers wait while it exists
``{p}:model:champion``                     string: JSON pointer to the champion model
``{p}:model:events``                       pub/sub channel: champion changes
=========================================  ==============================================

No key holds every customer: lists and counts over all customers read the ``partitions``
shards' sorted sets and merge them (:mod:`core.leaderboard`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings


def partition_of(customer_id: str, partitions: int) -> int:
    """The Kafka partition of a customer's events: CRC32 of the key, modulo the partition
    count (librdkafka's default partitioner).

    >>> partition_of("C00042", 8), partition_of("C00042", 1)
    (1, 0)
    """
    return zlib.crc32(customer_id.encode()) % partitions


@dataclass(frozen=True)
class Keys:
    """Key names for one prefix and partition count.

    >>> k = Keys("churn", 8)
    >>> k.customer("C00042"), k.risk(1), k.fence("customer-activity", 3)
    ('churn:{1}:c:C00042', 'churn:{1}:risk', 'churn:{3}:fence:customer-activity')
    >>> k.customer_id_of("churn:{1}:c:C00042")
    'C00042'
    >>> k.outbox(2), k.outbox_seq(2)
    ('churn:{2}:outbox', 'churn:{2}:outbox:seq')
    """

    prefix: str
    partitions: int

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """The layout of ``settings`` (``CHURN_REDIS_KEY_PREFIX``, ``CHURN_TOPIC_PARTITIONS``)."""
        return cls(settings.redis_key_prefix, settings.topic_partitions)

    @property
    def shards(self) -> range:
        """The shard (= partition) numbers."""
        return range(self.partitions)

    def shard_of(self, customer_id: str) -> int:
        return partition_of(customer_id, self.partitions)

    def shard_of_key(self, key: bytes) -> int:
        """:meth:`shard_of` for a customer id already encoded (a Kafka message key)."""
        return zlib.crc32(key) % self.partitions

    def _tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def customer(self, customer_id: str) -> str:
        return f"{self._tag(self.shard_of(customer_id))}:c:{customer_id}"

    def customer_key_head(self, shard: int) -> str:
        """What every customer key of ``shard`` starts with (the customer id follows), for
        Lua scripts that build the keys of one shard's customers."""
        return f"{self._tag(shard)}:c:"

    def customer_pattern(self) -> str:
        """SCAN pattern of every customer hash."""
        return f"{self.prefix}:{{*}}:c:*"

    def customer_id_of(self, key: str | bytes) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return text[text.index("}:c:", len(self.prefix)) + 4 :]

    def risk(self, shard: int) -> str:
        return f"{self._tag(shard)}:risk"

    def risk_band(self, shard: int, band: str) -> str:
        return f"{self._tag(shard)}:risk:{band}"

    def scored_at(self, shard: int) -> str:
        return f"{self._tag(shard)}:scored_at"

    def fence(self, topic: str, partition: int) -> str:
        return f"{self._tag(partition)}:fence:{topic}"

    def outbox(self, partition: int) -> str:
        """Sorted set: partition ``partition``'s output records awaiting delivery, by
        sequence number (:mod:`core.outbox`)."""
        return f"{self._tag(partition)}:outbox"

    def outbox_seq(self, partition: int) -> str:
        """String: the last sequence number given to an entry of that outbox."""
        return f"{self._tag(partition)}:outbox:seq"

    def owner(self, partition: int) -> str:
        """String: the token of the worker that took partition ``partition`` over last
        (:func:`core.outbox.claim_partition`)."""
        return f"{self._tag(partition)}:owner"

    @property
    def decisions(self) -> str:
        """List (newest first) of retraining decisions, JSON objects, written by monitoring."""
        return f"{self.prefix}:decisions"

    @property
    def retrain_requests(self) -> str:
        """List of pending retrain requests (JSON objects), e.g. from POST /admin/retrain."""
        return f"{self.prefix}:retrain:requests"

    @property
    def retrain_cooldown(self) -> str:
        """String set with an expiry when a trigger requests a retrain (the cooldown)."""
        return f"{self.prefix}:retrain:cooldown"

    @property
    def champion(self) -> str:
        return f"{self.prefix}:model:champion"

    @property
    def model_events(self) -> str:
        return f"{self.prefix}:model:events"


# Fields of a customer's hash (see the table above).
TILE_PREFIX = "d:"
HASH_PAGE_PREFIX = "h:"  # h:<day>:<page>: a full page of a tile's activity hashes
SEALED_FIELD = "s"
SCALARS_FIELD = "m"
SCORE_FIELD = "r"
"""The latest score, all its fields in one value (:func:`core.customer_encoding.encode_score`)."""
