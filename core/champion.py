"""Following the registry's champion model without a restart (worker and API alike).

The registry's Redis pointer says which version is champion (see :mod:`core.registry`).
:meth:`ChampionFollower.refresh` looks at it and, when the version changed, loads (and
hash-checks) the new artifact and swaps it in with one assignment: a caller sees the old
model or the new one, never a mix. A failure keeps the model in use and is logged once
per distinct error; ``last_error`` says why (for readiness checks).
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from core.model import Scorer
from core.registry import ModelRegistry, RegistryError, unloadable_champion

log = logging.getLogger(__name__)


class ChampionFollower:
    """Holds the current champion; ``model`` is ``None`` until one is promoted.

    ``model_info`` is the gauge (labelled by version) set to 1 for the model in use.
    """

    def __init__(self, registry: ModelRegistry, model_info: Gauge) -> None:
        self.registry = registry
        self.model_info = model_info
        self.model: Scorer | None = None
        self.last_error: str | None = None
        self._warned_missing = False

    def refresh(self) -> bool:
        """Check the pointer now (blocking I/O); return True when a new model was loaded."""
        try:
            pointer = self.registry.champion()
            if pointer is None:
                if not self._warned_missing:
                    log.warning("no champion model registered: nothing can be scored yet")
                    self._warned_missing = True
                self.last_error = None
                return False
            if self.model is not None and pointer.version == self.model.version:
                self.last_error = None
                return False
            try:
                model = self.registry.load_champion()
            except RegistryError as exc:  # e.g. its directory is gone, the pointer stayed
                raise _Unloadable(unloadable_champion(pointer.version, exc)) from None
        except Exception as exc:
            error = str(exc) if isinstance(exc, _Unloadable) else f"{type(exc).__name__}: {exc}"
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
            self.model_info.labels(previous).set(0)
        self.model_info.labels(model.version).set(1)
        log.info("champion model loaded version=%s previous=%s", model.version, previous)
        needed = retention_needed(model)
        if needed > self.registry.retention_days:
            log.warning(
                "champion model %s was trained on %d days of history per customer, but "
                "CHURN_RETENTION_DAYS=%d keeps less: its long-window features are truncated "
                "online; set CHURN_RETENTION_DAYS=%d for the worker and the API",
                model.version, needed, self.registry.retention_days, needed,
            )  # fmt: skip
        return True


class _Unloadable(Exception):
    """The champion the pointer names cannot be loaded (the message says what to do)."""


def retention_needed(model: Scorer) -> int:
    """Days of history the model's features were computed over when it was trained (0
    when its metadata does not say)."""
    value = model.metadata.get("retention_days", 0)
    return int(value) if isinstance(value, int | float) else 0
