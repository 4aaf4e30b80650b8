"""The one way churnstream opens a Redis connection (URL, password, timeouts)."""

from __future__ import annotations

import redis

from core.settings import Settings


def connect_redis(settings: Settings, *, decode_responses: bool = False) -> redis.Redis:
    """A client for ``REDIS_URL``; ``REDIS_PASSWORD`` applies when the URL carries none."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options: dict[str, object] = {
        "decode_responses": decode_responses,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "health_check_interval": 30,
    }
    if password is not None:
        options["password"] = password
    return redis.Redis.from_url(settings.redis_url, **options)
