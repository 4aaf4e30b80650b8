"""Helpers for tests that run real processes: free ports, /proc inspection, CLI envs."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from churnstream.infra.processes import churnstream_argv, cmdline, read_pid_file, stop_pid
from churnstream.infra.redis_server import RedisServer
from core.customer_encoding import decode_score
from core.keys import SCORE_FIELD
from core.scores import Score
from core.settings import Settings
from core.settings_env import settings_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = churnstream_argv()  # `churnstream`, run by this interpreter


def delete_test_topics(kafka_bootstrap_servers: str, test_id: str) -> None:
    """Delete every topic named after ``test_id`` (its input, output and dead-letter topics,
    and the stream engine's internal ones), so that a broker serving the whole suite does
    not pile up thousands of partitions. Failures are ignored: cleaning up is best effort."""
    from confluent_kafka.admin import AdminClient

    with suppress(Exception):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap_servers})
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(test_id)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=10).values():
                with suppress(Exception):
                    future.result(timeout=15)


def free_ports(count: int) -> list[int]:
    """Distinct ports nothing listens on right now (all bound at once, then released)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def isolated_settings(
    kafka_bootstrap_servers: str, redis_url: str, test_id: str, home: Path, **overrides: Any
) -> Settings:
    """Settings of one test: its own topics, Redis keys and consumer group (named after
    ``test_id``), its directories under ``home`` and a free worker port."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap_servers,
        "redis_url": redis_url,
        "topic_prefix": f"{test_id}.",
        "topic_partitions": 3,
        "redis_key_prefix": test_id,
        "consumer_group": f"{test_id}-worker",
        "run_dir": home / "run",
        "model_dir": home / "models",
        "archive_dir": home / "archive",
        "reports_dir": home / "reports",
        "score_log_dir": home / "score-log",
        "worker_web_port": free_ports(1)[0],
    }
    return Settings(**{**values, **overrides})


@contextmanager
def own_redis_server(home: Path) -> Iterator[RedisServer]:
    """A Redis server under ``home`` that only the caller uses (and may stop and restart),
    stopped afterwards."""
    server = RedisServer(home=home, port=free_ports(1)[0])
    server.prepare()
    server.wait_ready(server.start(), timeout=30)
    try:
        yield server
    finally:
        pid = read_pid_file(server.pid_file)
        if pid is not None:
            stop_pid(pid, server.markers, timeout=10)


def child_env(
    settings: Settings | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for CLI subprocesses: this repository first on the import path,
    then every setting of ``settings`` (when given) in its variable, then ``extra``."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    if settings is None:
        return {**env, **(extra or {})}
    return settings_environment(settings, extra, base=env)


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of every live process whose command line contains ``text``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = cmdline(int(entry.name))
            if text in line:
                found[int(entry.name)] = line
    return found


def kill_leftovers(run_dir: Path) -> None:
    """Last resort so a failing test never leaves a broker or Redis running."""
    for pid in processes_mentioning(str(run_dir)):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def every_shard(client: object, keys: object, index: str) -> list[tuple[bytes, float]]:
    """Every member of one index (``"risk"`` or ``"scored_at"``) over all shards, read
    shard by shard and sorted here (score then id, descending): an oracle for
    :mod:`core.leaderboard`."""
    items: list[tuple[bytes, float]] = []
    for shard in keys.shards:  # type: ignore[attr-defined]
        name = getattr(keys, index)(shard)
        items += client.zrange(name, 0, -1, withscores=True)  # type: ignore[attr-defined]
    return sorted(items, key=lambda item: (item[1], item[0]), reverse=True)


def stored_score(client: Any, keys: Any, customer_id: str) -> Score | None:
    """The latest score stored in ``customer_id``'s hash (None when none), read as the
    readers of the store read it (:func:`core.customer_encoding.decode_score`)."""
    data = client.hget(keys.customer(customer_id), SCORE_FIELD)
    return None if data is None else decode_score(customer_id, data)
