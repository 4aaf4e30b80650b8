"""What every local service (Kafka broker, Redis server, Prometheus) shares: its files
under one home directory, its address on 127.0.0.1, and waiting until it answers.

Layout of a service's home: ``data/`` (what it stores), ``<file_stem>.log`` (its log and
its own stdout/stderr) and ``<file_stem>.pid`` (the pid of the running process).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import ClassVar

from churnstream.infra.processes import InfraError, is_alive, tail, wait_port

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class LocalService:
    """Base of a local service (a frozen dataclass with ``home`` and ``port``).

    A subclass names its files (:attr:`file_stem`), names itself for users (:attr:`title`)
    and says how it is probed (:meth:`answers`).
    """

    home: Path
    port: int

    file_stem: ClassVar[str]
    title: ClassVar[str]
    poll_seconds: ClassVar[float] = 0.1  # between two probes while starting

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.file_stem}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.file_stem}.pid"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the service answers a request (not only accepts a connection)."""
        raise NotImplementedError

    def wait_ready(self, pid: int, timeout: float) -> None:
        """Wait until the service answers; raise :class:`InfraError` with the log tail if
        ``pid`` exits first or ``timeout`` seconds pass."""
        started = time.monotonic()
        deadline = started + timeout
        if wait_port(HOST, self.port, timeout, pid=pid):
            while time.monotonic() < deadline and is_alive(pid):
                if self.answers(timeout=min(3.0, max(0.5, deadline - time.monotonic()))):
                    elapsed = time.monotonic() - started
                    log.info(
                        "%s ready pid=%d address=%s elapsed=%.1fs",
                        self.file_stem,
                        pid,
                        self.address,
                        elapsed,
                    )
                    return
                time.sleep(self.poll_seconds)
        reason = "exited" if not is_alive(pid) else f"did not answer within {timeout:.0f}s"
        raise InfraError(
            f"{self.title} (pid {pid}) {reason} on {self.address}; log: {self.log_file}",
            tail(self.log_file),
        )
