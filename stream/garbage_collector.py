"""The worker's garbage-collector settings."""

from __future__ import annotations

import gc

# Allocations between collections of the youngest generation (CPython's default: 700).
_GC_YOUNG_THRESHOLD = 50_000


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
