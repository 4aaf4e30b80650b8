"""The API benchmark's measuring helpers: percentiles, CPU seconds of processes and
of Redis, waiting for a quiet machine."""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from typing import Any

import redis

from bench.cpu import machine_busy_seconds, redis_cpu_seconds
from core.settings import Settings

log = logging.getLogger("bench.api")


# --- timing helpers -------------------------------------------------------------------------


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def wait_for_quiet(max_wait: float = 20.0, limit_cores: float = 0.5) -> dict[str, float]:
    """Wait (at most ``max_wait`` seconds) until the rest of the machine, sampled over one
    second, keeps less than ``limit_cores`` cores busy: other people's test runs on this
    2-core box would otherwise be measured too. Returns what was waited and seen."""
    start = time.monotonic()
    while True:
        busy_0, _ = machine_busy_seconds()
        wall_0 = time.monotonic()
        time.sleep(1.0)
        busy_1, _ = machine_busy_seconds()
        cores = (busy_1 - busy_0) / (time.monotonic() - wall_0)
        waited = time.monotonic() - start
        if cores < limit_cores or waited >= max_wait:
            return {"waited_s": round(waited, 1), "busy_cores_before_start": round(cores, 2)}


class PhaseCpu:
    """CPU seconds of this process, Redis and everything else over a phase."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.wall_0 = time.perf_counter()
        self.busy_0, _ = machine_busy_seconds()
        self.own_0 = _own_cpu_seconds()
        self.redis_0 = redis_cpu_seconds(client)
        self.commands_0 = redis_commands(client)

    def result(self) -> dict[str, float]:
        busy_1, _ = machine_busy_seconds()
        own = _own_cpu_seconds() - self.own_0
        redis_s = redis_cpu_seconds(self.client) - self.redis_0
        return {
            "wall_s": round(time.perf_counter() - self.wall_0, 2),
            "this_process_s": round(own, 2),
            "redis_s": round(redis_s, 2),
            "other_processes_s": round(max(0.0, busy_1 - self.busy_0 - own - redis_s), 2),
            "redis_commands": redis_commands(self.client) - self.commands_0,
        }


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_state(client: redis.Redis) -> dict[str, Any]:
    memory = client.info("memory")
    persistence = client.info("persistence")
    return {
        "used_memory": int(memory["used_memory"]),
        "used_memory_rss": int(memory["used_memory_rss"]),
        "used_memory_human": memory.get("used_memory_human"),
        "keys": int(client.dbsize()),
        "aof_enabled": int(persistence.get("aof_enabled", 0)),
        "aof_current_size": int(persistence.get("aof_current_size", 0) or 0),
    }


# --- the app in-process -------------------------------------------------------------------


def app_of(settings: Settings) -> Any:
    from serving.main import create_app

    return create_app(settings)


@contextlib.asynccontextmanager
async def lifespan_of(app: Any) -> Any:
    """Run the app's lifespan around the block, and hand its state to each request the way
    uvicorn does (httpx's ASGITransport does neither)."""
    async with app.router.lifespan_context(app) as state:
        shared = dict(state) if state else {}

        async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                scope["state"] = dict(shared)
            await app(scope, receive, send)

        yield with_state
