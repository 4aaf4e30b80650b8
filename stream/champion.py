"""Hot reload of the champion model: the worker checks the registry every few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core import metrics
from core.model import LinearModel
from core.registry import ModelRegistry

log = logging.getLogger(__name__)


class ChampionWatcher:
    """A model source that follows the registry's champion without a restart.

    Calling it returns the current champion (``None`` until one is registered). At most
    every ``check_seconds`` it looks at the champion pointer; when the version changed it
    loads (and hash-checks) the new artifact and swaps it in between two batches. A
    failure to load keeps the model in use and is logged.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        check_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.check_seconds = check_seconds
        self.clock = clock
        self.model: LinearModel | None = None
        self._checked_at = float("-inf")
        self._warned_missing = False

    def __call__(self) -> LinearModel | None:
        if self.clock() - self._checked_at >= self.check_seconds:
            self.refresh()
        return self.model

    def refresh(self) -> bool:
        """Check the registry now; return True when a new model was loaded."""
        self._checked_at = self.clock()
        try:
            pointer = self.registry.champion()
            if pointer is None:
                if not self._warned_missing:
                    log.warning("no champion model registered: events are applied, not scored")
                    self._warned_missing = True
                return False
            if self.model is not None and pointer.version == self.model.version:
                return False
            model = self.registry.load_champion()
        except Exception:
            log.exception("could not load the champion model; keeping the current one")
            return False
        if model is None:
            return False
        previous = self.model.version if self.model else None
        self.model = model
        if previous:
            metrics.WORKER_MODEL_INFO.labels(previous).set(0)
        metrics.WORKER_MODEL_INFO.labels(model.version).set(1)
        log.info("champion model loaded version=%s previous=%s", model.version, previous)
        return True
