"""Kafka client configuration and topic administration (confluent-kafka / librdkafka)."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from core.settings import Settings
from core.topics import Topics

log = logging.getLogger(__name__)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka connection settings (bootstrap and security) for any client.

    >>> from core.settings import Settings
    >>> cfg = client_config(Settings(kafka_security_protocol="SASL_SSL",
    ...     kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u", kafka_sasl_password="p"))
    >>> cfg["security.protocol"], cfg["sasl.username"], cfg["sasl.password"]
    ('SASL_SSL', 'u', 'p')
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    optional = {
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": _secret(settings.kafka_sasl_password),
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": _secret(settings.kafka_ssl_key_password),
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    return config


# A fetch waits for this much data (or ``fetch.wait.max.ms``) before the broker answers.
# With librdkafka's default of one byte, a consumer keeping up re-fetches after every
# producer request: at 10,000 events/s that took ~19 % of a core in the broker, against
# ~5 % with 64 KB (docs/benchmarks.md); a quiet stream waits ``fetch.wait.max.ms`` at most.
INPUT_FETCH_MIN_BYTES = 65_536


def input_fetch_config(settings: Settings) -> dict[str, Any]:
    """How a reader of the input topics fetches (the worker, and the benchmark's floor
    loop): a fetch returns once :data:`INPUT_FETCH_MIN_BYTES` are there or after
    ``CHURN_BATCH_WITHIN_MS`` (at most 100 ms), so a quiet stream adds at most that to
    an event's latency, and a busy one costs the broker one fetch per 64 KB, not one per
    producer request; up to 64 MB are prefetched.

    >>> from core.settings import Settings
    >>> input_fetch_config(Settings(batch_within_ms=10))["fetch.wait.max.ms"]
    10
    """
    return {
        "fetch.wait.max.ms": min(settings.batch_within_ms, 100),
        "fetch.min.bytes": INPUT_FETCH_MIN_BYTES,
        "queued.max.messages.kbytes": 65_536,
    }


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the four churnstream topics where missing; return the names created.

    Existing topics are left as they are (their partition count is not changed).
    """
    topics = Topics.from_settings(settings)
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
        )
        for name in topics.all()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                raise
    log.info("topics created topics=%s partitions=%d", ",".join(created), settings.topic_partitions)
    return created


class PartitionCountMismatch(RuntimeError):
    """The input topics' partition count differs from ``CHURN_TOPIC_PARTITIONS``."""


def check_input_partitions(settings: Settings, timeout: float = 30.0) -> None:
    """Raise :class:`PartitionCountMismatch` unless both input topics have exactly
    ``CHURN_TOPIC_PARTITIONS`` partitions: the Redis key layout has one shard per partition
    and finds a customer's shard from that number (:mod:`core.keys`)."""
    topics = Topics.from_settings(settings)
    metadata = AdminClient(client_config(settings)).list_topics(timeout=timeout).topics
    for name in (topics.activity, topics.transactions):
        found = metadata.get(name)
        if found is not None and len(found.partitions) != settings.topic_partitions:
            raise PartitionCountMismatch(
                f"topic {name} has {len(found.partitions)} partitions but "
                f"CHURN_TOPIC_PARTITIONS is {settings.topic_partitions}: set "
                "CHURN_TOPIC_PARTITIONS to the input topics' partition count (both input "
                "topics need the same count)"
            )


def input_end_offsets(settings: Settings, timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The next offset to be written (high watermark) of every partition of both input
    topics. Raises ``KafkaException`` when the broker cannot answer within ``timeout``."""
    topics = Topics.from_settings(settings)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": "churnstream-watermarks",
            "enable.auto.commit": False,
        }
    )
    try:
        ends = {}
        deadline = time.monotonic() + timeout
        for topic in (topics.activity, topics.transactions):
            metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
            for partition in metadata.partitions:
                ends[(topic, partition)] = high_watermark(consumer, topic, partition, deadline)
        return ends
    finally:
        consumer.close()


# The errors of a partition whose leader is not in place yet. The errors the client
# returns for a watermark request are not marked retriable, so they are named here.
_LEADER_NOT_IN_PLACE = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def high_watermark(consumer: Consumer, topic: str, partition: int, deadline: float) -> int:
    """The next offset to be written to ``topic[partition]``, asked again until the
    ``time.monotonic()`` ``deadline`` while the broker answers with a retriable error: a
    partition created (or a broker started) a moment ago answers ``NOT_LEADER_FOR_PARTITION``
    until its leader is in place."""
    while True:
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(deadline - time.monotonic(), 0.1)
            )
            return int(high)
        except KafkaException as exc:
            error = exc.args[0]
            retriable = error.retriable() or error.code() in _LEADER_NOT_IN_PLACE
            if not retriable or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
