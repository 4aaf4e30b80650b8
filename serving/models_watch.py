"""The champion model the API scores with, kept current without a restart.

The registry's Redis pointer says which version is champion (see :mod:`core.registry`).
:meth:`ModelWatcher.run` looks at it every ``check_seconds`` and, when the version
changed, loads (and hash-checks) the new artifact off the event loop and swaps it in with
one assignment: a request sees the old model or the new one, never a mix. A failure to
load keeps the model in use and is logged; ``last_error`` says why for ``/ready``.
"""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread

from core import metrics
from core.model import LinearModel
from core.registry import ModelRegistry

log = logging.getLogger(__name__)


class ModelWatcher:
    """Follows the registry's champion; ``model`` is ``None`` until one is promoted."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.model: LinearModel | None = None
        self.last_error: str | None = None

    def refresh(self) -> bool:
        """Check the pointer now (blocking); return True when a new model was loaded."""
        try:
            pointer = self.registry.champion()
            if pointer is None:
                self.last_error = None
                return False
            if self.model is not None and pointer.version == self.model.version:
                self.last_error = None
                return False
            model = self.registry.load_champion()
        except Exception as exc:
            # Redis down or a refused artifact: keep serving with the model we have. The
            # traceback is logged once per distinct error, not at every poll.
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:
                log.exception("could not check or load the champion model; keeping the current one")
            self.last_error = error
            return False
        self.last_error = None
        if model is None:
            return False
        previous = self.model.version if self.model else None
        self.model = model
        if previous:
            metrics.API_MODEL_INFO.labels(previous).set(0)
        metrics.API_MODEL_INFO.labels(model.version).set(1)
        log.info("champion model loaded version=%s previous=%s", model.version, previous)
        return True

    async def run(self, check_seconds: float) -> None:
        """Refresh every ``check_seconds`` until cancelled (Redis and file I/O in a thread)."""
        while True:
            await asyncio.sleep(check_seconds)
            await anyio.to_thread.run_sync(self.refresh)
