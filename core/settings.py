"""Every setting of churnstream, read from the environment (or a ``.env`` file).

Kafka and Redis connection settings use the conventional names (``KAFKA_*``, ``REDIS_*``);
everything specific to churnstream starts with ``CHURN_``. :class:`Settings` gathers the
field groups of ``core/settings_*.py``, one module per concern; the API's own settings
(:class:`serving.config.ApiSettings`) repeat none of them. Create settings through
:func:`get_settings` (cached) rather than at import time, so tests and commands can
override them. Invalid values fail fast with a message naming the variable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from core.settings_base import setting
from core.settings_connections import ConnectionSettings
from core.settings_infra import InfraSettings
from core.settings_monitoring import MonitoringSettings
from core.settings_stream import StreamSettings
from core.settings_targeting import (
    DEFAULT_CONTACT_COST,
    DEFAULT_INCENTIVE,
    DEFAULT_PLAN_VALUES,
    DEFAULT_SAVE_RATE,
    TargetingSettings,
)

__all__ = [
    "DEFAULT_CONTACT_COST",
    "DEFAULT_INCENTIVE",
    "DEFAULT_PLAN_VALUES",
    "DEFAULT_SAVE_RATE",
    "Settings",
    "env_var_name",
    "get_settings",
    "scoring_clock",
    "settings_reference",
]


# pydantic orders fields from the last base to the first: the groups are listed in reverse
# so that the documentation lists connections first and logging last.
class Settings(
    TargetingSettings, MonitoringSettings, InfraSettings, StreamSettings, ConnectionSettings
):
    """churnstream configuration. Field docstrings double as the documentation table."""

    # --- Logging -----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("CHURN_LOG_LEVEL", "INFO")
    """Log level."""
    log_format: Literal["json", "text"] = setting("CHURN_LOG_FORMAT", "text")
    """'text' (key=value) for terminals, 'json' for log shippers."""


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
    """(environment variable, default, description) for every setting, in declaration order;
    a description is the field's docstring on one line."""
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
        meaning = " ".join((field.description or "").split())  # a docstring's lines, joined
        rows.append((env_var_name(name, settings_class), shown, meaning))
    return rows
