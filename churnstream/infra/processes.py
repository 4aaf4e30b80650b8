"""Process helpers for the local services and for child commands: start detached,
recognise, stop, wait, probe, tail.

Conventions:

* A service runs as a detached child (its own session, stdin from /dev/null, stdout and
  stderr appended to a log file) and its pid is written to a pid file.
* A pid alone is never trusted: the pid may have been reused by an unrelated process.
  :func:`is_ours` also reads ``/proc/<pid>/cmdline`` and requires every *marker* (e.g.
  ``"kafka.Kafka"`` and the absolute path of the run directory) to appear in it.
  A zombie counts as gone.
* Children started by this interpreter are remembered so that stopping them also reaps
  them (no zombies); processes started by an earlier command are reaped by init.
* A child held as a :class:`subprocess.Popen` (a worker or an API that a demo, a test or
  a benchmark runs) is stopped with :func:`stop_process` and crashed with
  :func:`kill_process`; both reap it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

# Children this interpreter started, kept so they can be reaped (and are not garbage
# collected while running, which would emit a ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


class InfraError(RuntimeError):
    """A local service could not be fetched, started, reached or stopped.

    The message is meant for users; when a log file is involved, its last lines are part
    of the message and also available as :attr:`log_tail`.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        full = f"{message}\n--- log tail ---\n{log_tail}" if log_tail else message
        super().__init__(full)
        self.log_tail = log_tail


def churnstream_argv(*args: str, note: str = "") -> list[str]:
    """The command line of ``churnstream ARGS`` run by this interpreter (so it works
    without the console script installed). ``note`` goes into the command line as a
    comment, so ``ps`` tells which run a child belongs to.

    >>> churnstream_argv("worker")[1:]
    ['-c', 'from churnstream.cli import main; main()', 'worker']
    """
    code = "from churnstream.cli import main; main()" + (f"  # {note}" if note else "")
    return [sys.executable, "-c", code, *args]


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` in a new session, output appended to ``log_file``; write ``pid_file``.

    Returns the pid. The process outlives this interpreter.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            list(argv),
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    write_pid_file(pid_file, proc.pid)
    log.debug("process started pid=%d argv0=%s log=%s", proc.pid, argv[0], log_file)
    return proc.pid


def write_pid_file(pid_file: Path, pid: int) -> None:
    """Write ``pid`` atomically (a reader never sees a half-written file)."""
    tmp = pid_file.with_suffix(pid_file.suffix + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def read_pid_file(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None when missing or unreadable."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> str:
    """The command line of ``pid`` with NULs turned into spaces ("" when gone/zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the parenthesised command name, which may itself contain ")".
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our finished child."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (our own zombies get reaped)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not _is_zombie(pid)


def is_ours(pid: int | None, markers: Sequence[str]) -> bool:
    """True when ``pid`` is alive and its command line contains every marker."""
    if pid is None or pid <= 0 or not is_alive(pid):
        return False
    line = cmdline(pid)
    return bool(line) and all(marker in line for marker in markers)


def find_pids(markers: Sequence[str]) -> list[int]:
    """Every live process whose command line contains all ``markers`` (scans /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_ours(int(entry.name), markers):
            found.append(int(entry.name))
    return sorted(found)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child); True if it did."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_pid(pid: int, markers: Sequence[str], timeout: float = 30.0) -> bool:
    """Stop ``pid`` if it is ours: SIGTERM, wait ``timeout``, then SIGKILL and wait.

    Returns True when a process was stopped, False when there was nothing (of ours) to stop.
    Raises :class:`InfraError` when the process survives SIGKILL.
    """
    if not is_ours(pid, markers):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return True
    log.warning("process ignored SIGTERM, killing pid=%d timeout=%.0fs", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10.0):
        raise InfraError(f"process {pid} survived SIGKILL")
    return True


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Stop a child: SIGTERM (it shuts down cleanly), wait ``timeout``, then SIGKILL.

    Returns its exit code (at once when it had already exited); the child is reaped.
    """
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("process ignored SIGTERM, killing pid=%d timeout=%.0fs", process.pid, timeout)
        return kill_process(process)


def kill_process(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL a child, as in a crash (no shutdown code runs); reap it, return its code."""
    if process.poll() is None:
        process.kill()
    return process.wait(timeout=30)


def start_child(
    argv: Sequence[str],
    *,
    name: str,
    log_file: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.1,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child (output appended to ``log_file``) and wait until
    ``ready()``. Raises :class:`InfraError` naming ``name``, with the log's tail, when the
    child exits first or is not ready within ``timeout`` seconds (it is then stopped)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    outcome = wait_ready(process, ready, timeout, interval)
    if outcome == "ready":
        return process
    if outcome == "exited":
        message = f"{name} exited (code {process.returncode}) at start; log: {log_file}"
    else:
        stop_process(process, timeout=10)
        message = f"{name} was not ready within {timeout:.0f}s; log: {log_file}"
    raise InfraError(message, tail(log_file))


def wait_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
) -> Literal["ready", "exited", "timeout"]:
    """Wait until ``ready()`` is true; ``"ready"``, ``"exited"`` when the child ended
    first, or ``"timeout"`` after ``timeout`` seconds (the caller says what failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return "exited"
        if ready():
            return "ready"
        time.sleep(interval)
    return "timeout"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of ``url`` answers 200 (a health or readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float, pid: int | None = None) -> bool:
    """Wait until ``host:port`` accepts connections; give up early if ``pid`` dies."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if pid is not None and not is_alive(pid):
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ("" when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 256 * lines))  # enough for lines of ~256 bytes
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])
