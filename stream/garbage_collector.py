"""The worker's garbage-collector settings, and what it keeps out of the collector's passes."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Allocations between collections of the youngest generation (CPython's default: 700).
_GC_YOUNG_THRESHOLD = 50_000
# While idle, at most this often, a full collection over everything frozen before.
FULL_COLLECTION_SECONDS = 600.0


def tune_garbage_collector() -> None:
    """Collect less often: a batch allocates tens of thousands of short-lived objects
    (messages, events, archive rows), and with CPython's default thresholds the cycle
    collector ran dozens of times a batch, its older generations scanning the customer
    state kept in memory (about a tenth of the worker's CPU). The worker's data holds
    almost no reference cycles, so waiting longer frees the same memory. What was loaded
    at start (libraries, the model) is frozen out of every pass."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, middle, oldest)


class KeptStateFreezer:
    """Keeps the customer state a worker holds in memory out of the collector's passes.

    :meth:`after_batch` freezes (``gc.freeze()``: a constant-time move into the permanent
    generation) whatever is alive once a batch is done: mostly the customers it loaded,
    which stay for as long as the worker owns their partition. Without it, each
    collection of an older generation walked every customer held, and their event-id
    sets: at 10,000 events/s with ~100,000 customers held, passes of 94-224 ms, each a
    stall of the whole batch loop. A frozen object is still freed as soon as nothing
    refers to it (reference counting); only reference cycles among them wait, and the
    batches make almost none: over 200 batches of 700 events to the same customers the
    frozen count levelled off (+21 objects in the last 20 batches). :meth:`when_idle` is
    the safety net: at most every ``every_seconds``, while no message is waiting, it
    unfreezes and collects everything once (a pause that grows with what the worker
    holds, taken when it costs no event any latency).

    Cost: ``after_batch`` is constant time (CPython splices the generations' lists)."""

    def __init__(
        self,
        every_seconds: float = FULL_COLLECTION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_seconds = every_seconds
        self.clock = clock
        self._last_full = clock()

    def after_batch(self) -> None:
        gc.freeze()

    def when_idle(self) -> None:
        if self.clock() - self._last_full < self.every_seconds:
            return
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._last_full = self.clock()
        log.info(
            "full garbage collection unreachable=%d frozen=%d seconds=%.3f",
            found,
            gc.get_freeze_count(),
            time.perf_counter() - started,
        )
