"""The worker's model source: the registry's champion, checked every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

from core import metrics
from core.champion import ChampionFollower
from core.model import Scorer
from core.registry import ModelRegistry


class ChampionWatcher(ChampionFollower):
    """Calling it returns the current champion (``None`` until one is registered),
    re-checking the registry at most every ``check_seconds``, between two batches."""

    def __init__(
        self,
        registry: ModelRegistry,
        check_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(registry, metrics.WORKER_MODEL_INFO)
        self.check_seconds = check_seconds
        self.clock = clock
        self._checked_at = float("-inf")

    def __call__(self) -> Scorer | None:
        if self.clock() - self._checked_at >= self.check_seconds:
            self._checked_at = self.clock()
            self.refresh()
        return self.model
