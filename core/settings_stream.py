"""Settings of the topics, the events and the streaming worker (``CHURN_*``), part of
:class:`core.settings.Settings`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from core.settings_base import EnvSettings, env


class StreamSettings(EnvSettings):
    """Topic names and sizes, event limits, the Redis key layout and the worker."""

    # --- Topics and events -------------------------------------------------------------
    topic_prefix: str = Field(
        "",
        validation_alias=env("CHURN_TOPIC_PREFIX"),
        description="Prefix added to every topic name (e.g. 'staging.').",
    )
    topic_partitions: int = Field(
        8,
        ge=1,
        le=1024,
        validation_alias=env("CHURN_TOPIC_PARTITIONS"),
        description="Partitions for topics churnstream creates.",
    )
    topic_replication_factor: int = Field(
        1,
        ge=1,
        validation_alias=env("CHURN_TOPIC_REPLICATION_FACTOR"),
        description="Replication factor for topics churnstream creates.",
    )
    max_event_bytes: int = Field(
        65536,
        ge=256,
        validation_alias=env("CHURN_MAX_EVENT_BYTES"),
        description="Largest accepted encoded event, in bytes.",
    )
    max_future_skew_seconds: int = Field(
        86400,
        ge=0,
        validation_alias=env("CHURN_MAX_FUTURE_SKEW_SECONDS"),
        description="How far in the future an event_time may lie before it is rejected.",
    )
    redis_key_prefix: str = Field(
        "churn",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        validation_alias=env("CHURN_REDIS_KEY_PREFIX"),
        description="Prefix of every Redis key churnstream writes.",
    )

    # --- Worker and online state -------------------------------------------------------
    consumer_group: str = Field(
        "churnstream-worker",
        validation_alias=env("CHURN_CONSUMER_GROUP"),
        description="Kafka consumer group (and Faust app id) of the workers.",
    )
    retention_days: int = Field(
        120,
        ge=91,
        le=3650,
        validation_alias=env("CHURN_RETENTION_DAYS"),
        description="Days of day tiles kept per customer, counted back from their newest event.",
    )
    worker_engine: Literal["batch", "faust"] = Field(
        "batch",
        validation_alias=env("CHURN_WORKER_ENGINE"),
        description="How the worker reads Kafka: 'batch' (confluent-kafka micro-batches, "
        "fast) or 'faust' (Faust agent with stream.take_events).",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        validation_alias=env("CHURN_BATCH_SIZE"),
        description="Most events the worker applies in one micro-batch.",
    )
    batch_within_ms: int = Field(
        10,
        ge=1,
        le=60_000,
        validation_alias=env("CHURN_BATCH_WITHIN_MS"),
        description="Longest the worker waits to fill a micro-batch, in milliseconds: "
        "under load batches fill at once; when quiet, this bounds the added latency.",
    )
    rescore_after_seconds: int = Field(
        3600,
        ge=1,
        validation_alias=env("CHURN_RESCORE_AFTER_SECONDS"),
        description="Re-score a customer whose score is older than this, even without events.",
    )
    rescore_tick_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=env("CHURN_RESCORE_TICK_SECONDS"),
        description="How often the worker looks for stale scores.",
    )
    rescore_max_per_tick: int = Field(
        500,
        ge=1,
        validation_alias=env("CHURN_RESCORE_MAX_PER_TICK"),
        description="Most stale customers re-scored per tick (spreads the work out).",
    )
    model_dir: Path = Field(
        Path("models"),
        validation_alias=env("CHURN_MODEL_DIR"),
        description="Model registry directory (artifacts and manifests).",
    )
    as_of: datetime | None = Field(
        None,
        validation_alias=env("CHURN_AS_OF"),
        description="Score as of this fixed time (ISO 8601, UTC unless it has an offset) "
        "instead of the clock, to explore a backfill of old events (the Online Retail demo "
        "uses the end of its data). Silent-customer re-scoring is off then. Leave unset in "
        "production.",
    )
    archive_dir: Path = Field(
        Path("archive"),
        validation_alias=env("CHURN_ARCHIVE_DIR"),
        description="Event archive directory: every applied event as Parquet, partitioned "
        "by event date (read by training, label joins and `churnstream verify`).",
    )
    archive_enabled: bool = Field(
        True,
        validation_alias=env("CHURN_ARCHIVE_ENABLED"),
        description="Whether the worker appends applied events to the event archive.",
    )
    archive_compact_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=env("CHURN_ARCHIVE_COMPACT_SECONDS"),
        description="How often the worker turns its archive segments into Parquet files.",
    )
    model_check_seconds: float = Field(
        2.0,
        gt=0,
        validation_alias=env("CHURN_MODEL_CHECK_SECONDS"),
        description="How often the worker checks for a new champion model.",
    )
    worker_session_timeout_seconds: float = Field(
        10.0,
        ge=3,
        le=300,
        validation_alias=env("CHURN_WORKER_SESSION_TIMEOUT_SECONDS"),
        description="Consumer-group session timeout: how soon a crashed worker's partitions "
        "move to the others.",
    )
    worker_shutdown_seconds: float = Field(
        8.0,
        gt=0,
        le=300,
        validation_alias=env("CHURN_WORKER_SHUTDOWN_SECONDS"),
        description="Longest the worker spends shutting down after SIGTERM or Ctrl-C; past "
        "it (Kafka or Redis unreachable) it exits anyway: the unfinished batch is applied "
        "again, once, on restart.",
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        validation_alias=env("CHURN_WORKER_WEB_HOST"),
        description="Address the worker's web server binds to (0.0.0.0 in containers).",
    )
    worker_web_port: int = Field(
        6066,
        ge=1,
        le=65535,
        validation_alias=env("CHURN_WORKER_WEB_PORT"),
        description="Port of the worker's web server (/metrics, health).",
    )
