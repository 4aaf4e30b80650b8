"""What every settings class of churnstream shares: where values come from (the
environment, or a ``.env`` file in the working directory), that they are frozen once read,
and that each field is bound to exactly one environment variable (:func:`env`).
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings, SettingsConfigDict


def env(name: str) -> Any:
    """Bind a field to exactly one environment variable name (``validation_alias=env(...)``)."""
    return AliasChoices(name)


class EnvSettings(BaseSettings):
    """Settings read from the environment or ``.env``; unknown variables are ignored, and
    invalid values fail fast with a message naming the variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )
