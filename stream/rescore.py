"""Re-scoring silent customers: recency features grow with time, so risk must too."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException

from core.model import Scorer
from core.producer import EventProducer
from core.scores import encode_band_change
from core.store import FeatureStore
from core.topics import Topics
from stream.scoring import score_customers

log = logging.getLogger(__name__)


def rescore_stale_customers(
    store: FeatureStore,
    model: Scorer,
    producer: EventProducer,
    topics: Topics,
    now: float,
    older_than_seconds: float,
    limit: int,
) -> int:
    """Score again, at ``now``, up to ``limit`` customers whose score is older than
    ``older_than_seconds`` (oldest first), from their state in Redis; publish band changes.
    Returns how many were re-scored."""
    customer_ids = store.stale_customers(now - older_than_seconds, limit)
    if not customer_ids:
        return 0
    customers = list(store.load_customers(customer_ids).values())
    scores, changes = score_customers(model, customers, now, trigger="timer")
    for change in changes:
        producer.send_record(topics.scores, change.customer_id.encode(), encode_band_change(change))
    if changes and producer.flush(timeout=30):
        raise KafkaException("band changes not delivered; scores left for the next tick")
    store.write_scores(scores)
    log.info("rescored stale customers count=%d band_changes=%d", len(scores), len(changes))
    return len(scores)
