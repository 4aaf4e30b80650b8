"""Settings of the HTTP API, read from the environment (or ``.env``) like :mod:`core.settings`.

:class:`ApiSettings` is the API's own part of the configuration: where it listens, its keys,
its retention actions and its access log. Everything else the API reads (Redis, the model
registry, ``CHURN_REPORTS_DIR``, ``CHURN_AS_OF`` ...) comes from
:class:`core.settings.Settings`; the two bind no variable twice. Create them through
:func:`get_api_settings` (cached) so tests can pass their own. Invalid values fail fast
with a message naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from core.model import BANDS
from core.settings_base import EnvSettings, setting

DEFAULT_ACTIONS = {
    "high": "retention offer",
    "medium": "satisfaction survey",
    "low": "standard engagement",
}


AccessLog = Literal["all", "errors", "off"]


class ApiSettings(EnvSettings):
    """churnstream API configuration (only what :class:`core.settings.Settings` lacks).
    Field docstrings double as documentation."""

    host: str = setting("CHURN_API_HOST", "127.0.0.1")
    """Address the API binds to (0.0.0.0 in containers)."""
    port: int = setting("CHURN_API_PORT", 8000, ge=1, le=65535)
    """Port of the API."""
    api_keys: SecretStr = setting("CHURN_API_KEYS", SecretStr(""))
    """Comma-separated keys accepted in the X-API-Key header. Admin routes are disabled (403) while
    this is empty."""
    read_keys_required: bool = setting("CHURN_API_READ_KEYS_REQUIRED", False)
    """Require a key from CHURN_API_KEYS on read routes too (health, readiness and metrics stay open
    for probes and scrapers)."""
    retention_actions: dict[str, str] = setting(
        "CHURN_RETENTION_ACTIONS", default_factory=lambda: dict(DEFAULT_ACTIONS)
    )
    """JSON object: the recommended retention action for each risk band."""
    access_log: AccessLog = setting("CHURN_API_ACCESS_LOG", "errors")
    """Access log lines (logger serving.access): `errors` for answers with status 400 and above,
    `all` for every request, or `off`. Every request is counted by route and status in /metrics
    either way. `all` costs a busy API about a fifth more CPU per risk lookup."""

    @field_validator("retention_actions")
    @classmethod
    def _one_action_per_band(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(BANDS))
        missing = [band for band in BANDS if band not in value]
        if unknown or missing:
            raise ValueError(
                f"needs exactly the bands {', '.join(BANDS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        return value

    @model_validator(mode="after")
    def _keys_for_reads(self) -> ApiSettings:
        if self.read_keys_required and not self.keys():
            raise ValueError("CHURN_API_READ_KEYS_REQUIRED is true but CHURN_API_KEYS is empty")
        return self

    def keys(self) -> tuple[bytes, ...]:
        """The accepted API keys (UTF-8 bytes, for constant-time comparison).

        >>> ApiSettings(api_keys=SecretStr(" k1, k2 ,,")).keys()
        (b'k1', b'k2')
        """
        raw = self.api_keys.get_secret_value()
        return tuple(key.strip().encode() for key in raw.split(",") if key.strip())


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    """The process-wide API settings, read once from the environment."""
    return ApiSettings()
