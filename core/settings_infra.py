"""Settings of the local Kafka, Redis and Prometheus that ``churnstream infra`` runs,
part of :class:`core.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings_base import EnvSettings, env


class InfraSettings(EnvSettings):
    """Ports, data directory and broker jars of the local stack."""

    # --- Local infrastructure (churnstream infra) --------------------------------------
    run_dir: Path = Field(
        Path(".run"),
        validation_alias=env("CHURN_RUN_DIR"),
        description="Where `churnstream infra` keeps data, logs and pid files.",
    )
    kafka_port: int = Field(
        19092,
        ge=1,
        le=65535,
        validation_alias=env("CHURN_KAFKA_PORT"),
        description="Client port of the local Kafka broker.",
    )
    kafka_controller_port: int = Field(
        19093,
        ge=1,
        le=65535,
        validation_alias=env("CHURN_KAFKA_CONTROLLER_PORT"),
        description="Controller port of the local Kafka broker.",
    )
    redis_port: int = Field(
        16379,
        ge=1,
        le=65535,
        validation_alias=env("CHURN_REDIS_PORT"),
        description="Port of the local Redis server.",
    )
    redis_cluster_port: int = Field(
        17000,
        ge=1,
        le=55533,
        validation_alias=env("CHURN_REDIS_CLUSTER_PORT"),
        description="First port of the local Redis Cluster (`churnstream infra up "
        "--redis-cluster`): its three masters listen on this port and the next two, and "
        "use each port + 10000 for the cluster bus.",
    )
    prometheus_port: int = Field(
        19090,
        ge=1,
        le=65535,
        validation_alias=env("CHURN_PROMETHEUS_PORT"),
        description="Port of the local Prometheus (`churnstream infra up --prometheus`).",
    )
    kafka_libs_dir: Path = Field(
        Path.home() / ".cache" / "churnstream" / "kafka-3.9.1" / "libs",
        validation_alias=env("CHURN_KAFKA_LIBS_DIR"),
        description="Cache of the Kafka broker jars (fetched once with Maven).",
    )
    kafka_heap: str = Field(
        "512m",
        pattern=r"^[0-9]+[mMgG]$",
        validation_alias=env("CHURN_KAFKA_HEAP"),
        description="JVM heap of the local Kafka broker.",
    )
