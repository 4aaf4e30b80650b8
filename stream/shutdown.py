"""Stopping the worker on time, whatever state Kafka and Redis are in.

A clean stop finishes the batch in progress, leaves the consumer group and closes the
clients. With Kafka or Redis unreachable those steps wait for an answer that does not come
(a batch retrying its commit, a consumer leaving its group, a producer flushing). So a stop
request (SIGTERM, Ctrl-C) also starts a :class:`ShutdownDeadline`: when the clean stop has
not ended the process within ``CHURN_WORKER_SHUTDOWN_SECONDS``, the process exits anyway.
That is as safe as a crash, which the worker is built for: what Redis holds ends at the
offset fences of the last committed batch, and a batch that was not committed is read and
applied again, once, after a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import faust

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_DEADLINE = 0  # nothing is lost: the unfinished batch is applied on restart


class ShutdownDeadline:
    """Ends the process ``seconds`` after :meth:`start`, unless it has ended by then.

    ``exit`` is called with the exit status from a daemon thread (default ``os._exit``,
    which skips interpreter clean-up: the clean-up is what hangs). Starting it twice keeps
    the first deadline.
    """

    def __init__(self, seconds: float, exit: Callable[[int], object] = os._exit) -> None:
        self.seconds = seconds
        self._exit = exit
        self._started: float | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._started is not None

    def start(self, reason: str) -> None:
        with self._lock:
            if self._started is not None:
                return
            self._started = time.monotonic()
        log.info("stopping reason=%s deadline_s=%.1f", reason, self.seconds)
        threading.Thread(target=self._wait, name="shutdown-deadline", daemon=True).start()

    def _wait(self) -> None:
        time.sleep(self.seconds)
        log.warning(
            "shutdown did not finish within %.1fs (Kafka or Redis unreachable?); exiting "
            "now: a batch not yet committed is applied again on restart",
            self.seconds,
        )
        logging.shutdown()
        self._exit(EXIT_SHUTDOWN_DEADLINE)


class DeadlineWorker(faust.Worker):
    """A Faust worker whose SIGTERM and SIGINT also set ``stopping`` and start
    ``deadline``.

    The handlers are installed at the signal level (``signal.signal``), so they run even
    while the event loop is busy in a long call (the 'faust' engine applies a batch on the
    loop): Faust's own handler still runs from the loop, through the wake-up descriptor
    asyncio keeps for signals.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        deadline: ShutdownDeadline,
        stopping: threading.Event,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        # No terminal spinner: it writes control characters among the log lines (Faust
        # drops it only when it sets the logging up, which the CLI does instead).
        self.spinner = None
        self.deadline = deadline
        self.stopping = stopping

    def _install_signal_handlers_unix(self) -> None:
        super()._install_signal_handlers_unix()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        self.deadline.start(signal.Signals(signum).name)
