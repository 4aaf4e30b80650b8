"""A local ``redis-server`` (Debian's package) on 127.0.0.1, durable (AOF), for local use.

Layout of its home (``<run_dir>/redis``)::

    data/       --dir: the append-only file lives here
    redis.log   Redis's log and its own stdout/stderr
    redis.pid   pid of the running server

The server keeps its original command line (``--set-proc-title no``) so it can be told
apart from any other Redis by the data directory on that line.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from churnstream.infra.processes import InfraError, start_detached
from churnstream.infra.service import HOST, LocalService

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """The ``redis-server`` executable on ``PATH``."""
    path = shutil.which("redis-server")
    if path is None:
        raise InfraError("redis-server is not installed (apt-get install redis-server)")
    return path


@dataclass(frozen=True)
class RedisServer(LocalService):
    """One local Redis server: its files under ``home`` and its port."""

    home: Path
    port: int

    name: ClassVar[str] = "redis"
    file_stem: ClassVar[str] = "redis"
    title: ClassVar[str] = "Redis server"

    @property
    def markers(self) -> tuple[str, ...]:
        """What the server's command line contains: the program and this home's data dir."""
        return ("redis-server", str(self.data_dir))

    def prepare(self) -> None:
        """Create the data directory (and check that redis-server is installed)."""
        find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [
            find_redis_server(),
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            # The AOF's rewrites write its base as an RDB file: uncompressed, a rewrite's
            # forked child (which shares the machine's cores with the worker) took ~30 %
            # less time, for a larger file on disk.
            "--rdbcompression",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--set-proc-title",
            "no",
            "--logfile",
            str(self.log_file),
        ]

    def start(self) -> int:
        """Start the server detached (call :meth:`prepare` first); return its pid."""
        return start_detached(
            self.argv(), log_file=self.log_file, pid_file=self.pid_file, cwd=self.home
        )

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the server answers PING (not while it is still loading its data)."""
        import redis  # here, not at the top: every CLI command imports this module

        client = redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
