"""Coalescing concurrent risk lookups into one Redis round trip and one feature evaluation.

``GET /customers/{id}/risk`` evaluates features at request time. For one customer that is
one ``HGETALL`` and a numpy evaluation whose fixed costs do not depend on how many
customers it covers. Under load, many lookups are in flight at once on the event loop;
:class:`RiskBatcher` gathers the ones that arrive while it is idle or busy and answers them
together with :func:`core.risk.assess_many`. A lookup never waits for a timer: the batch is
run as soon as the event loop gets to it (``call_soon``), so a lone request is answered
as fast as before and a burst shares the work.

The batch runs on the event loop thread (no thread hop): one pipelined Redis round trip
on loopback plus the numpy work, typically well under a millisecond for dozens of
customers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from core.model import LinearModel
from core.risk import RiskAssessment, assess_many
from core.store import FeatureStore

_Pending = tuple[str, asyncio.Future[RiskAssessment | None]]


class RiskBatcher:
    """Answers :meth:`assess` calls in batches of at most ``max_batch`` customers."""

    def __init__(
        self,
        store: FeatureStore,
        max_batch: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.clock = clock
        self._pending: dict[int, tuple[LinearModel | None, list[_Pending]]] = {}
        self._scheduled = False
        self.batches = 0  # batches run, for tests and metrics
        self.largest_batch = 0

    async def assess(self, customer_id: str, model: LinearModel | None) -> RiskAssessment | None:
        """The customer's live assessment (None when never seen), computed with ``model``
        at the time its batch runs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RiskAssessment | None] = loop.create_future()
        key = id(model)
        group = self._pending.setdefault(key, (model, []))
        group[1].append((customer_id, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        groups, self._pending = self._pending, {}
        for model, waiting in groups.values():
            for start in range(0, len(waiting), self.max_batch):
                self._answer(model, waiting[start : start + self.max_batch])

    def _answer(self, model: LinearModel | None, waiting: list[_Pending]) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(waiting))
        try:
            results = assess_many(self.store, model, [cid for cid, _ in waiting], self.clock())
        except Exception as exc:  # every waiting request gets the error (500 via the app)
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():  # a client that went away cancels its future
                future.set_result(result)
