"""The API process's garbage-collector settings, applied for the life of the app.

CPython's cycle collector runs a young-generation pass each time the container objects
allocated (minus those freed) reach a threshold, 700 by default, and every tenth such pass
also scans the middle generation. The pass runs inside whichever request happens to
allocate the object that crosses the threshold, and costs that request ~0.3-0.5 ms here
(most of it freeing whatever cyclic garbage the pass finds); a middle-generation pass
~0.7 ms. A risk lookup itself leaves no cyclic garbage, but HTTP clients and servers
do (an in-process httpx client ~20 objects a request), so with the default threshold
about one lookup in thirty paid for a pass.

:func:`collecting_rarely` starts with a full collection, freezes what was loaded at start
(libraries, the model: never rescanned again) and raises the young threshold to
:data:`YOUNG_THRESHOLD`: a pass then comes about once per ~500 such requests and costs
the request it lands in a few milliseconds (it frees the same garbage, in one go). The
memory held meanwhile is that garbage: a few megabytes at most.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between young-generation passes (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


@contextmanager
def collecting_rarely(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Collect, freeze the survivors, and raise the young threshold to ``young`` while the
    block runs; the process's thresholds are restored when it ends."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
