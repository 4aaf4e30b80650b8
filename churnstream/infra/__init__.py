"""Local infrastructure for development and tests: Kafka and Redis as plain processes."""

from churnstream.infra.stack import InfraError, LocalStack, ServiceStatus, StackStatus

__all__ = ["InfraError", "LocalStack", "ServiceStatus", "StackStatus"]
