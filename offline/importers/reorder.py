"""A bounded reorder buffer: hold events briefly so output leaves in event-time order.

An importer that derives events (e.g. a ``session_end`` at a session's last row) learns
about some of them only after it has read later rows. The buffer keeps every event whose
time is within ``horizon_ms`` of the newest row read and releases the older ones in time
order. As long as no derived event is older than ``newest - horizon_ms`` when it is added,
the output is sorted; memory is bounded by the events of one horizon.

>>> buffer = ReorderBuffer(horizon_ms=10)
>>> for t, name in [(0, "a"), (5, "b"), (3, "c"), (20, "d")]:
...     buffer.push(t, name)
>>> list(buffer.release(newest_ms=20))
['a', 'c', 'b']
>>> list(buffer.drain())
['d']
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """A min-heap of ``(time_ms, arrival, item)``; ties leave in arrival order."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._heap: list[tuple[int, int, T]] = []
        self._arrivals = 0
        self.released_until_ms: int | None = None  # time of the last item released

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time_ms: int, item: T) -> None:
        self._arrivals += 1
        heapq.heappush(self._heap, (time_ms, self._arrivals, item))

    def is_late(self, time_ms: int) -> bool:
        """True when an item at ``time_ms`` would leave after a later one already released."""
        return self.released_until_ms is not None and time_ms < self.released_until_ms

    def release(self, newest_ms: int) -> Iterator[T]:
        """Items older than ``newest_ms - horizon_ms``, oldest first."""
        limit = newest_ms - self.horizon_ms
        heap = self._heap
        while heap and heap[0][0] < limit:
            time_ms, _, item = heapq.heappop(heap)
            self.released_until_ms = time_ms
            yield item

    def drain(self) -> Iterator[T]:
        """Everything left, oldest first (at the end of the input)."""
        heap = self._heap
        while heap:
            time_ms, _, item = heapq.heappop(heap)
            self.released_until_ms = time_ms
            yield item
