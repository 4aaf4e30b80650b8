"""CPU seconds for the benchmarks: of one process, of a process tree, of the whole machine
and of Redis; and a free port for a server under test.

Process figures come from ``/proc/<pid>/stat`` (user + system time, in clock ticks);
the machine's from the first line of ``/proc/stat``; Redis's from ``INFO cpu``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import redis


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in family:
                family.add(child)
                frontier.append(child)
    return sum(process_cpu_seconds(p) for p in family)


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used so far (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def free_port() -> int:
    """A port nothing listens on right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
