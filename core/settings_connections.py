"""Settings of the connections to Kafka and Redis (conventional names: ``KAFKA_*``,
``REDIS_*``), part of :class:`core.settings.Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from core.settings_base import EnvSettings, setting

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class ConnectionSettings(EnvSettings):
    """Where Kafka and Redis are, and how to authenticate to them."""

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap_servers: str = setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    """Kafka bootstrap servers, comma separated."""
    kafka_security_protocol: SecurityProtocol = setting("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    kafka_sasl_mechanism: SaslMechanism | None = setting("KAFKA_SASL_MECHANISM", None)
    """SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)."""
    kafka_sasl_username: str | None = setting("KAFKA_SASL_USERNAME", None)
    """SASL user name."""
    kafka_sasl_password: SecretStr | None = setting("KAFKA_SASL_PASSWORD", None)
    """SASL password."""
    kafka_ssl_ca_location: str | None = setting("KAFKA_SSL_CA_LOCATION", None)
    """CA certificate file for TLS."""
    kafka_ssl_certificate_location: str | None = setting("KAFKA_SSL_CERTIFICATE_LOCATION", None)
    """Client certificate file for mutual TLS."""
    kafka_ssl_key_location: str | None = setting("KAFKA_SSL_KEY_LOCATION", None)
    """Client private key file for mutual TLS."""
    kafka_ssl_key_password: SecretStr | None = setting("KAFKA_SSL_KEY_PASSWORD", None)
    """Password of the client private key."""

    # --- Redis -------------------------------------------------------------------------
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:16379/0")
    """Redis URL (redis:// or rediss://), including the database number."""
    redis_password: SecretStr | None = setting("REDIS_PASSWORD", None)
    """Redis password, when it is not part of REDIS_URL."""
    redis_cluster: Literal["auto", "yes", "no"] = setting("CHURN_REDIS_CLUSTER", "auto")
    """Whether REDIS_URL names a node of a Redis Cluster: 'auto' asks the server at start-up (INFO
    cluster), 'yes' or 'no' skip the question."""

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value
