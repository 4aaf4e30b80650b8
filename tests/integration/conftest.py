"""Fixtures shared by integration tests that break a service on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from churnstream.infra.redis_server import RedisServer
from tests.support import own_redis_server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test only (tests stop and restart it), stopped afterwards."""
    with own_redis_server(tmp_path / "redis") as server:
        yield server
