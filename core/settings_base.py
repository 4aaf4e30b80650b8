"""What every settings class of churnstream shares: where values come from (the
environment, or a ``.env`` file in the working directory), that they are frozen once read,
and how a field is declared: :func:`setting` binds it to exactly one environment variable,
and the docstring under it is its description (the documentation table's "Meaning").
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict


def setting(variable: str, default: Any = PydanticUndefined, **constraints: Any) -> Any:
    """A field read from the environment variable ``variable`` (and no other name), with
    ``default`` and ``constraints`` as :func:`pydantic.Field` takes them."""
    return Field(default, validation_alias=AliasChoices(variable), **constraints)


class EnvSettings(BaseSettings):
    """Settings read from the environment or ``.env``; unknown variables are ignored, and
    invalid values fail fast with a message naming the variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )
