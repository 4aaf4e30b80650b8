"""Every setting of churnstream, read from the environment (or a ``.env`` file).

Kafka and Redis connection settings use the conventional names (``KAFKA_*``, ``REDIS_*``);
everything specific to churnstream starts with ``CHURN_``. Create settings through
:func:`get_settings` (cached) rather than at import time, so tests and commands can
override them. Invalid values fail fast with a message naming the variable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
DEFAULT_REPORTS_DIR = Path("reports/drift")

# Retention campaign defaults: the reference campaign of the expected maximum profit
# measure (Verbraken et al., 2013): customer value 200, incentive 10, contact cost 1, and
# an acceptance rate drawn from Beta(6, 14), whose mean 0.3 is the save rate.
DEFAULT_CONTACT_COST = 1.0
DEFAULT_INCENTIVE = 10.0
DEFAULT_SAVE_RATE = 0.3
DEFAULT_PLAN_VALUES: dict[str, float] = {"free": 0.0, "paid": 200.0}
PLAN_LEVELS = ("free", "paid")


def _env(name: str) -> Any:
    """Bind a field to exactly one environment variable name."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """churnstream configuration. Field descriptions double as the documentation table."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        validation_alias=_env("KAFKA_SECURITY_PROTOCOL"),
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None,
        validation_alias=_env("KAFKA_SASL_MECHANISM"),
        description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER).",
    )
    kafka_sasl_username: str | None = Field(
        None, validation_alias=_env("KAFKA_SASL_USERNAME"), description="SASL user name."
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD"), description="SASL password."
    )
    kafka_ssl_ca_location: str | None = Field(
        None,
        validation_alias=_env("KAFKA_SSL_CA_LOCATION"),
        description="CA certificate file for TLS.",
    )
    kafka_ssl_certificate_location: str | None = Field(
        None,
        validation_alias=_env("KAFKA_SSL_CERTIFICATE_LOCATION"),
        description="Client certificate file for mutual TLS.",
    )
    kafka_ssl_key_location: str | None = Field(
        None,
        validation_alias=_env("KAFKA_SSL_KEY_LOCATION"),
        description="Client private key file for mutual TLS.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None,
        validation_alias=_env("KAFKA_SSL_KEY_PASSWORD"),
        description="Password of the client private key.",
    )

    # --- Redis -------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0",
        validation_alias=_env("REDIS_URL"),
        description="Redis URL (redis:// or rediss://), including the database number.",
    )
    redis_password: SecretStr | None = Field(
        None,
        validation_alias=_env("REDIS_PASSWORD"),
        description="Redis password, when it is not part of REDIS_URL.",
    )
    redis_cluster: Literal["auto", "yes", "no"] = Field(
        "auto",
        validation_alias=_env("CHURN_REDIS_CLUSTER"),
        description="Whether REDIS_URL names a node of a Redis Cluster: 'auto' asks the "
        "server at start-up (INFO cluster), 'yes' or 'no' skip the question.",
    )

    # --- Topics and events -------------------------------------------------------------
    topic_prefix: str = Field(
        "",
        validation_alias=_env("CHURN_TOPIC_PREFIX"),
        description="Prefix added to every topic name (e.g. 'staging.').",
    )
    topic_partitions: int = Field(
        8,
        ge=1,
        le=1024,
        validation_alias=_env("CHURN_TOPIC_PARTITIONS"),
        description="Partitions for topics churnstream creates.",
    )
    topic_replication_factor: int = Field(
        1,
        ge=1,
        validation_alias=_env("CHURN_TOPIC_REPLICATION_FACTOR"),
        description="Replication factor for topics churnstream creates.",
    )
    max_event_bytes: int = Field(
        65536,
        ge=256,
        validation_alias=_env("CHURN_MAX_EVENT_BYTES"),
        description="Largest accepted encoded event, in bytes.",
    )
    max_future_skew_seconds: int = Field(
        86400,
        ge=0,
        validation_alias=_env("CHURN_MAX_FUTURE_SKEW_SECONDS"),
        description="How far in the future an event_time may lie before it is rejected.",
    )
    redis_key_prefix: str = Field(
        "churn",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        validation_alias=_env("CHURN_REDIS_KEY_PREFIX"),
        description="Prefix of every Redis key churnstream writes.",
    )

    # --- Worker and online state -------------------------------------------------------
    consumer_group: str = Field(
        "churnstream-worker",
        validation_alias=_env("CHURN_CONSUMER_GROUP"),
        description="Kafka consumer group (and Faust app id) of the workers.",
    )
    retention_days: int = Field(
        120,
        ge=91,
        le=3650,
        validation_alias=_env("CHURN_RETENTION_DAYS"),
        description="Days of day tiles kept per customer, counted back from their newest event.",
    )
    dedup_days: int = Field(
        21,
        ge=1,
        le=3650,
        validation_alias=_env("CHURN_DEDUP_DAYS"),
        description="Days, counted back from a customer's newest activity event, within "
        "which a duplicate activity event is recognised (event-id hashes are kept; "
        "transactions' are kept for the whole retention); an activity event further back "
        "is refused as too late (dead-lettered, not counted). Values above "
        "CHURN_RETENTION_DAYS act as CHURN_RETENTION_DAYS.",
    )
    worker_engine: Literal["batch", "faust"] = Field(
        "batch",
        validation_alias=_env("CHURN_WORKER_ENGINE"),
        description="How the worker reads Kafka: 'batch' (confluent-kafka micro-batches, "
        "fast) or 'faust' (Faust agent with stream.take_events).",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        validation_alias=_env("CHURN_BATCH_SIZE"),
        description="Most events the worker applies in one micro-batch.",
    )
    batch_within_ms: int = Field(
        10,
        ge=1,
        le=60_000,
        validation_alias=_env("CHURN_BATCH_WITHIN_MS"),
        description="Longest the worker waits to fill a micro-batch, in milliseconds: "
        "under load batches fill at once; when quiet, this bounds the added latency.",
    )
    rescore_after_seconds: int = Field(
        3600,
        ge=1,
        validation_alias=_env("CHURN_RESCORE_AFTER_SECONDS"),
        description="Re-score a customer whose score is older than this, even without events.",
    )
    rescore_tick_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("CHURN_RESCORE_TICK_SECONDS"),
        description="How often the worker looks for stale scores.",
    )
    rescore_max_per_tick: int = Field(
        500,
        ge=1,
        validation_alias=_env("CHURN_RESCORE_MAX_PER_TICK"),
        description="Most stale customers re-scored per tick (spreads the work out).",
    )
    model_dir: Path = Field(
        Path("models"),
        validation_alias=_env("CHURN_MODEL_DIR"),
        description="Model registry directory (artifacts and manifests).",
    )
    as_of: datetime | None = Field(
        None,
        validation_alias=_env("CHURN_AS_OF"),
        description="Score as of this fixed time (ISO 8601, UTC unless it has an offset) "
        "instead of the clock, to explore a backfill of old events (the Online Retail demo "
        "uses the end of its data). Silent-customer re-scoring is off then. Leave unset in "
        "production.",
    )
    archive_dir: Path = Field(
        Path("archive"),
        validation_alias=_env("CHURN_ARCHIVE_DIR"),
        description="Event archive directory: every applied event as Parquet, partitioned "
        "by event date (read by training, label joins and `churnstream verify`).",
    )
    archive_enabled: bool = Field(
        True,
        validation_alias=_env("CHURN_ARCHIVE_ENABLED"),
        description="Whether the worker appends applied events to the event archive.",
    )
    archive_compact_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("CHURN_ARCHIVE_COMPACT_SECONDS"),
        description="How often the worker turns its archive segments into Parquet files.",
    )
    model_check_seconds: float = Field(
        2.0,
        gt=0,
        validation_alias=_env("CHURN_MODEL_CHECK_SECONDS"),
        description="How often the worker checks for a new champion model.",
    )
    worker_session_timeout_seconds: float = Field(
        10.0,
        ge=3,
        le=300,
        validation_alias=_env("CHURN_WORKER_SESSION_TIMEOUT_SECONDS"),
        description="Consumer-group session timeout: how soon a crashed worker's partitions "
        "move to the others.",
    )
    worker_shutdown_seconds: float = Field(
        8.0,
        gt=0,
        le=300,
        validation_alias=_env("CHURN_WORKER_SHUTDOWN_SECONDS"),
        description="Longest the worker spends shutting down after SIGTERM or Ctrl-C; past "
        "it (Kafka or Redis unreachable) it exits anyway: the unfinished batch is applied "
        "again, once, on restart.",
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        validation_alias=_env("CHURN_WORKER_WEB_HOST"),
        description="Address the worker's web server binds to (0.0.0.0 in containers).",
    )
    worker_web_port: int = Field(
        6066,
        ge=1,
        le=65535,
        validation_alias=_env("CHURN_WORKER_WEB_PORT"),
        description="Port of the worker's web server (/metrics, health).",
    )

    # --- Local infrastructure (churnstream infra) --------------------------------------
    run_dir: Path = Field(
        Path(".run"),
        validation_alias=_env("CHURN_RUN_DIR"),
        description="Where `churnstream infra` keeps data, logs and pid files.",
    )
    kafka_port: int = Field(
        19092,
        ge=1,
        le=65535,
        validation_alias=_env("CHURN_KAFKA_PORT"),
        description="Client port of the local Kafka broker.",
    )
    kafka_controller_port: int = Field(
        19093,
        ge=1,
        le=65535,
        validation_alias=_env("CHURN_KAFKA_CONTROLLER_PORT"),
        description="Controller port of the local Kafka broker.",
    )
    redis_port: int = Field(
        16379,
        ge=1,
        le=65535,
        validation_alias=_env("CHURN_REDIS_PORT"),
        description="Port of the local Redis server.",
    )
    redis_cluster_port: int = Field(
        17000,
        ge=1,
        le=55533,
        validation_alias=_env("CHURN_REDIS_CLUSTER_PORT"),
        description="First port of the local Redis Cluster (`churnstream infra up "
        "--redis-cluster`): its three masters listen on this port and the next two, and "
        "use each port + 10000 for the cluster bus.",
    )
    prometheus_port: int = Field(
        19090,
        ge=1,
        le=65535,
        validation_alias=_env("CHURN_PROMETHEUS_PORT"),
        description="Port of the local Prometheus (`churnstream infra up --prometheus`).",
    )
    kafka_libs_dir: Path = Field(
        Path.home() / ".cache" / "churnstream" / "kafka-3.9.1" / "libs",
        validation_alias=_env("CHURN_KAFKA_LIBS_DIR"),
        description="Cache of the Kafka broker jars (fetched once with Maven).",
    )
    kafka_heap: str = Field(
        "512m",
        pattern=r"^[0-9]+[mMgG]$",
        validation_alias=_env("CHURN_KAFKA_HEAP"),
        description="JVM heap of the local Kafka broker.",
    )

    # --- Monitoring: drift, delayed labels, retraining ---------------------------------
    reports_dir: Path = Field(
        DEFAULT_REPORTS_DIR,
        validation_alias=_env("CHURN_REPORTS_DIR"),
        description="Directory of the drift reports (index.json and the HTML pages).",
    )
    reports_keep: int = Field(
        50,
        ge=1,
        le=10_000,
        validation_alias=_env("CHURN_REPORTS_KEEP"),
        description="Drift reports kept in CHURN_REPORTS_DIR; older ones are deleted.",
    )
    drift_sample_size: int = Field(
        10_000,
        ge=50,
        le=1_000_000,
        validation_alias=_env("CHURN_DRIFT_SAMPLE_SIZE"),
        description="Most recently scored customers sampled for a drift report.",
    )
    drift_recent_seconds: int = Field(
        86_400,
        ge=60,
        validation_alias=_env("CHURN_DRIFT_RECENT_SECONDS"),
        description="A drift report samples customers scored within this many seconds.",
    )
    drift_share_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        validation_alias=_env("CHURN_DRIFT_SHARE_THRESHOLD"),
        description="Dataset drift when at least this share of the features drifted "
        "(Evidently's rule; 0.5 is its default).",
    )
    drift_html_max_bytes: int = Field(
        10_000_000,
        ge=1_000_000,
        validation_alias=_env("CHURN_DRIFT_HTML_MAX_BYTES"),
        description="Largest drift report page; a larger one is redone on a smaller sample.",
    )
    monitor_interval_seconds: float = Field(
        3600.0,
        gt=0,
        validation_alias=_env("CHURN_MONITOR_INTERVAL_SECONDS"),
        description="How often `churnstream monitor` runs the drift report and the label join.",
    )
    monitor_metrics_host: str = Field(
        "127.0.0.1",
        validation_alias=_env("CHURN_MONITOR_METRICS_HOST"),
        description="Address `churnstream monitor`'s /metrics page binds to (0.0.0.0 in "
        "containers).",
    )
    monitor_metrics_port: int = Field(
        6067,
        ge=0,
        le=65535,
        validation_alias=_env("CHURN_MONITOR_METRICS_PORT"),
        description="Port of `churnstream monitor`'s /metrics page (0: none).",
    )
    score_shift_bucket_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("CHURN_SCORE_SHIFT_BUCKET_SECONDS"),
        description="The score-shift detector (ADWIN) reads the mean score of each bucket "
        "of this many seconds.",
    )
    score_shift_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        validation_alias=_env("CHURN_SCORE_SHIFT_DELTA"),
        description="ADWIN's confidence parameter: smaller means fewer, surer alerts.",
    )
    score_log_dir: Path = Field(
        Path("score-log"),
        validation_alias=_env("CHURN_SCORE_LOG_DIR"),
        description="Where the monitor keeps snapshots of served scores for the label join.",
    )
    score_log_every_seconds: int = Field(
        86_400,
        ge=60,
        validation_alias=_env("CHURN_SCORE_LOG_EVERY_SECONDS"),
        description="How often the monitor snapshots every customer's served score.",
    )
    label_horizon_days: int = Field(
        14,
        ge=1,
        le=365,
        validation_alias=_env("CHURN_LABEL_HORIZON_DAYS"),
        description="Days after a score in which its outcome is observed (when the model "
        "does not record its own label horizon).",
    )
    auc_drop_threshold: float = Field(
        0.05,
        gt=0,
        lt=1,
        validation_alias=_env("CHURN_AUC_DROP_THRESHOLD"),
        description="Retrain when the realized ROC AUC falls more than this share below "
        "the model's validation ROC AUC.",
    )
    retrain_on_drift: bool = Field(
        True,
        validation_alias=_env("CHURN_RETRAIN_ON_DRIFT"),
        description="Request a retrain when a drift report finds dataset drift.",
    )
    retrain_cooldown_seconds: int = Field(
        86_400,
        ge=0,
        validation_alias=_env("CHURN_RETRAIN_COOLDOWN_SECONDS"),
        description="After a retrain request, triggers wait this long before requesting "
        "another (manual requests always go through).",
    )
    retrain_window_days: int = Field(
        120,
        ge=30,
        le=3650,
        validation_alias=_env("CHURN_RETRAIN_WINDOW_DAYS"),
        description="A retrain's training and validation cutoffs lie within the last "
        "this-many days (its features also read the 90 days before the first cutoff).",
    )
    promotion_min_gain: float = Field(
        0.0,
        ge=0,
        lt=1,
        validation_alias=_env("CHURN_PROMOTION_MIN_GAIN"),
        description="A retrained model replaces the champion only when its ROC AUC on the "
        "same recent validation rows is higher by more than this.",
    )

    # --- Retention targeting -------------------------------------------------------------
    contact_cost: float = Field(
        DEFAULT_CONTACT_COST,
        ge=0,
        allow_inf_nan=False,
        validation_alias=_env("CHURN_CONTACT_COST"),
        description="Cost of contacting one customer in a retention campaign (currency "
        "units). The default is the expected-maximum-profit measure's.",
    )
    retention_incentive: float = Field(
        DEFAULT_INCENTIVE,
        ge=0,
        allow_inf_nan=False,
        validation_alias=_env("CHURN_RETENTION_INCENTIVE"),
        description="Incentive paid to each contacted churner who accepts the offer and stays.",
    )
    save_rate: float = Field(
        DEFAULT_SAVE_RATE,
        ge=0,
        le=1,
        validation_alias=_env("CHURN_SAVE_RATE"),
        description="Share of contacted churners who accept the offer and stay (0.3: the "
        "mean of the expected-maximum-profit measure's Beta(6, 14)).",
    )
    plan_values: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PLAN_VALUES),
        validation_alias=_env("CHURN_PLAN_VALUES"),
        description="JSON object: a subscriber's value at stake per plan level (free, "
        "paid). A customer's value is the larger of this and their recent spend rate, net of "
        "refunds, times the label horizon.",
    )

    # --- Logging -----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("CHURN_LOG_LEVEL"), description="Log level."
    )
    log_format: Literal["json", "text"] = Field(
        "text",
        validation_alias=_env("CHURN_LOG_FORMAT"),
        description="'text' (key=value) for terminals, 'json' for log shippers.",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("plan_values")
    @classmethod
    def _plan_values(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PLAN_LEVELS))
        if unknown:
            raise ValueError(
                f"unknown plan level(s) {', '.join(unknown)}; known: {', '.join(PLAN_LEVELS)}"
            )
        bad = [level for level, amount in value.items() if not 0 <= amount < float("inf")]
        if bad:
            raise ValueError(f"plan values must be finite and >= 0 (see {', '.join(bad)})")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def scoring_clock(settings: Settings) -> Callable[[], float]:
    """What "now" is for scoring, as epoch seconds: the clock, or ``CHURN_AS_OF``.

    >>> clock = scoring_clock(Settings(_env_file=None, as_of="2011-12-10T00:00:00Z"))
    >>> clock()
    1323475200.0
    """
    if settings.as_of is None:
        return time.time
    fixed = settings.as_of if settings.as_of.tzinfo else settings.as_of.replace(tzinfo=UTC)
    at = fixed.timestamp()
    return lambda: at


def env_var_name(field_name: str, settings_class: type[BaseSettings] = Settings) -> str:
    """The environment variable that sets ``field_name``.

    >>> env_var_name("kafka_bootstrap_servers")
    'KAFKA_BOOTSTRAP_SERVERS'
    >>> env_var_name("topic_partitions")
    'CHURN_TOPIC_PARTITIONS'
    """
    alias = settings_class.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def settings_reference(
    settings_class: type[BaseSettings] = Settings,
) -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, in declaration order."""
    rows = []
    for name, field in settings_class.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "kafka_libs_dir":
            shown = "~/.cache/churnstream/kafka-3.9.1/libs"
        elif default is None or name == "api_keys":
            shown = ""
        elif isinstance(default, dict):
            shown = json.dumps(default)
        else:
            shown = str(default)
        rows.append((env_var_name(name, settings_class), shown, field.description or ""))
    return rows
