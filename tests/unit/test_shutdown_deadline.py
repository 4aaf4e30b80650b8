"""The shutdown deadline ends the process once, after its delay, and not before."""

from __future__ import annotations

import threading
import time

from stream.shutdown import EXIT_SHUTDOWN_DEADLINE, ShutdownDeadline


def test_the_deadline_exits_once_after_its_delay() -> None:
    exits: list[tuple[int, float]] = []
    done = threading.Event()

    def record(status: int) -> None:
        exits.append((status, time.monotonic()))
        done.set()

    deadline = ShutdownDeadline(0.3, exit=record)
    assert not deadline.started
    started = time.monotonic()
    deadline.start("SIGTERM")
    deadline.start("SIGINT")  # a second signal keeps the first deadline
    assert deadline.started
    assert done.wait(5)
    time.sleep(0.5)  # no second exit follows
    assert len(exits) == 1
    status, at = exits[0]
    assert status == EXIT_SHUTDOWN_DEADLINE
    assert at - started >= 0.3


def test_nothing_happens_until_started() -> None:
    exits: list[int] = []
    ShutdownDeadline(0.05, exit=exits.append)
    time.sleep(0.2)
    assert exits == []
