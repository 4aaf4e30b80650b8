"""The Redis key layout, in one place. Every key starts with ``CHURN_REDIS_KEY_PREFIX``.

=====================================  ==================================================
key                                    holds
=====================================  ==================================================
``{p}:c:{<customer>}``                 hash: one customer — day tiles ``d:<day>``,
                                       scalars ``m``, and the latest score fields
                                       ``score``, ``band``, ``model_version``,
                                       ``scored_at``, ``last_event_time``, ``value``
``{p}:risk``                           sorted set: customers by latest score
``{p}:scored_at``                      sorted set: customers by time of latest score
``{p}:fence:<topic>:<partition>``      string: last offset applied from that partition
``{p}:decisions``                      list: retraining decisions (JSON), newest first
``{p}:retrain:requests``               list: pending retrain requests (JSON)
``{p}:retrain:cooldown``               string: set (with an expiry) when a trigger asked
                                       for a retrain; triggers wait while it exists
``{p}:model:champion``                 string: JSON pointer to the champion model
``{p}:model:events``                   pub/sub channel: champion changes
=====================================  ==================================================

The customer id sits inside ``{…}``, a Redis Cluster hash tag, so all of one customer's
data lives in one slot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names for one prefix.

    >>> k = Keys("churn")
    >>> k.customer("C00042"), k.risk, k.fence("customer-activity", 3)
    ('churn:c:{C00042}', 'churn:risk', 'churn:fence:customer-activity:3')
    >>> k.customer_id_of("churn:c:{C00042}")
    'C00042'
    """

    prefix: str

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:c:{{{customer_id}}}"

    def customer_pattern(self) -> str:
        return f"{self.prefix}:c:*"

    def customer_id_of(self, key: str | bytes) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return text[len(self.prefix) + 4 : -1]

    @property
    def risk(self) -> str:
        return f"{self.prefix}:risk"

    @property
    def scored_at(self) -> str:
        return f"{self.prefix}:scored_at"

    def fence(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:fence:{topic}:{partition}"

    def fence_pattern(self, topic: str) -> str:
        """SCAN pattern of every fence of ``topic`` (partition numbers in the last part)."""
        return f"{self.prefix}:fence:{topic}:*"

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


TILE_PREFIX = "d:"
SCALARS_FIELD = "m"
SCORE_FIELDS = ("score", "band", "model_version", "scored_at", "last_event_time", "value")
