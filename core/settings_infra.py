"""Settings of the local Kafka, Redis and Prometheus that ``churnstream infra`` runs,
part of :class:`core.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from core.settings_base import EnvSettings, setting


class InfraSettings(EnvSettings):
    """Ports, data directory and broker jars of the local stack."""

    # --- Local infrastructure (churnstream infra) --------------------------------------
    run_dir: Path = setting("CHURN_RUN_DIR", Path(".run"))
    """Where `churnstream infra` keeps data, logs and pid files."""
    kafka_port: int = setting("CHURN_KAFKA_PORT", 19092, ge=1, le=65535)
    """Client port of the local Kafka broker."""
    kafka_controller_port: int = setting("CHURN_KAFKA_CONTROLLER_PORT", 19093, ge=1, le=65535)
    """Controller port of the local Kafka broker."""
    redis_port: int = setting("CHURN_REDIS_PORT", 16379, ge=1, le=65535)
    """Port of the local Redis server."""
    redis_cluster_port: int = setting("CHURN_REDIS_CLUSTER_PORT", 17000, ge=1, le=55533)
    """First port of the local Redis Cluster (`churnstream infra up --redis-cluster`): its three
    masters listen on this port and the next two, and use each port + 10000 for the cluster bus."""
    prometheus_port: int = setting("CHURN_PROMETHEUS_PORT", 19090, ge=1, le=65535)
    """Port of the local Prometheus (`churnstream infra up --prometheus`)."""
    kafka_libs_dir: Path = setting(
        "CHURN_KAFKA_LIBS_DIR", Path.home() / ".cache" / "churnstream" / "kafka-3.9.1" / "libs"
    )
    """Cache of the Kafka broker jars (fetched once with Maven)."""
    kafka_heap: str = setting("CHURN_KAFKA_HEAP", "512m", pattern=r"^[0-9]+[mMgG]$")
    """JVM heap of the local Kafka broker."""
