"""Settings of the topics, the events and the streaming worker (``CHURN_*``), part of
:class:`core.settings.Settings`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from core.settings_base import EnvSettings, setting


class StreamSettings(EnvSettings):
    """Topic names and sizes, event limits, the Redis key layout and the worker."""

    # --- Topics and events -------------------------------------------------------------
    topic_prefix: str = setting("CHURN_TOPIC_PREFIX", "")
    """Prefix added to every topic name (e.g. 'staging.')."""
    topic_partitions: int = setting("CHURN_TOPIC_PARTITIONS", 8, ge=1, le=1024)
    """Partitions for topics churnstream creates."""
    topic_replication_factor: int = setting("CHURN_TOPIC_REPLICATION_FACTOR", 1, ge=1)
    """Replication factor for topics churnstream creates."""
    max_event_bytes: int = setting("CHURN_MAX_EVENT_BYTES", 65536, ge=256)
    """Largest accepted encoded event, in bytes."""
    max_future_skew_seconds: int = setting("CHURN_MAX_FUTURE_SKEW_SECONDS", 86400, ge=0)
    """How far in the future an event_time may lie before it is rejected."""
    redis_key_prefix: str = setting(
        "CHURN_REDIS_KEY_PREFIX", "churn", pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    """Prefix of every Redis key churnstream writes."""

    # --- Worker and online state -------------------------------------------------------
    consumer_group: str = setting("CHURN_CONSUMER_GROUP", "churnstream-worker")
    """Kafka consumer group (and Faust app id) of the workers."""
    retention_days: int = setting("CHURN_RETENTION_DAYS", 120, ge=91, le=3650)
    """Days of day tiles kept per customer, counted back from their newest event."""
    dedup_days: int = setting("CHURN_DEDUP_DAYS", 21, ge=1, le=3650)
    """Days, counted back from a customer's newest activity event, within which a duplicate
    activity event is recognised (event-id hashes are kept; transactions' are kept for the whole
    retention); an activity event further back is refused as too late (dead-lettered, not
    counted). Values above CHURN_RETENTION_DAYS act as CHURN_RETENTION_DAYS."""
    worker_engine: Literal["batch", "faust"] = setting("CHURN_WORKER_ENGINE", "batch")
    """How the worker reads Kafka: 'batch' (confluent-kafka micro-batches, fast) or 'faust' (Faust
    agent with stream.take_events)."""
    batch_size: int = setting("CHURN_BATCH_SIZE", 2000, ge=1, le=100_000)
    """Most events the worker applies in one micro-batch. Batches fill up only when the worker
    is behind: then larger ones share each batch's fixed costs (Redis round trips, the scoring
    call) among more events, and let a customer's several events be scored once. But a batch
    is committed by one Lua script, which holds Redis for about 15 µs per customer it touches
    (30 ms for 2,000 different customers), delaying API reads meanwhile."""
    batch_within_ms: int = setting("CHURN_BATCH_WITHIN_MS", 10, ge=1, le=60_000)
    """Longest the worker waits to fill a micro-batch, and a fetch from Kafka waits for 64 KB
    (at most 100 ms), in milliseconds: under load both fill at once; when quiet, this bounds
    the added latency (twice over: the fetch, then the batch)."""
    rescore_after_seconds: int = setting("CHURN_RESCORE_AFTER_SECONDS", 3600, ge=1)
    """Re-score a customer whose score is older than this, even without events."""
    rescore_tick_seconds: float = setting("CHURN_RESCORE_TICK_SECONDS", 5.0, gt=0)
    """How often the worker looks for stale scores."""
    rescore_max_per_tick: int = setting("CHURN_RESCORE_MAX_PER_TICK", 500, ge=1)
    """Most stale customers re-scored per tick (spreads the work out)."""
    model_dir: Path = setting("CHURN_MODEL_DIR", Path("models"))
    """Model registry directory (artifacts and manifests)."""
    as_of: datetime | None = setting("CHURN_AS_OF", None)
    """Score as of this fixed time (ISO 8601, UTC unless it has an offset) instead of the clock, to
    explore a backfill of old events (the Online Retail demo uses the end of its data).
    Silent-customer re-scoring is off then. Leave unset in production."""
    archive_dir: Path = setting("CHURN_ARCHIVE_DIR", Path("archive"))
    """Event archive directory: every applied event as Parquet, partitioned by event date (read by
    training, label joins and `churnstream verify`)."""
    archive_enabled: bool = setting("CHURN_ARCHIVE_ENABLED", True)
    """Whether the worker appends applied events to the event archive."""
    archive_compact_seconds: float = setting("CHURN_ARCHIVE_COMPACT_SECONDS", 60.0, gt=0)
    """How often the worker turns its archive segments into Parquet files."""
    model_check_seconds: float = setting("CHURN_MODEL_CHECK_SECONDS", 2.0, gt=0)
    """How often the worker checks for a new champion model."""
    worker_session_timeout_seconds: float = setting(
        "CHURN_WORKER_SESSION_TIMEOUT_SECONDS", 10.0, ge=3, le=300
    )
    """Consumer-group session timeout: how soon a crashed worker's partitions move to the others."""
    worker_shutdown_seconds: float = setting("CHURN_WORKER_SHUTDOWN_SECONDS", 8.0, gt=0, le=300)
    """Longest the worker spends shutting down after SIGTERM or Ctrl-C; past it (Kafka or Redis
    unreachable) it exits anyway: the unfinished batch is applied again, once, on restart."""
    worker_web_host: str = setting("CHURN_WORKER_WEB_HOST", "127.0.0.1")
    """Address the worker's web server binds to (0.0.0.0 in containers)."""
    worker_web_port: int = setting("CHURN_WORKER_WEB_PORT", 6066, ge=1, le=65535)
    """Port of the worker's web server (/metrics, health)."""
