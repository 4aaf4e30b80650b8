"""The champion model the API scores with, kept current without a restart.

The registry's Redis pointer says which version is champion (see :mod:`core.registry`).
:meth:`ModelWatcher.run` looks at it every ``check_seconds`` and, when the version
changed, loads (and hash-checks) the new artifact off the event loop and swaps it in with
one assignment: a request sees the old model or the new one, never a mix. A failure to
load keeps the model in use and is logged; ``last_error`` says why for ``/ready``.
"""

from __future__ import annotations

import asyncio

import anyio.to_thread

from core import metrics
from core.champion import ChampionFollower
from core.registry import ModelRegistry


class ModelWatcher(ChampionFollower):
    """Follows the registry's champion; ``model`` is ``None`` until one is promoted."""

    def __init__(self, registry: ModelRegistry) -> None:
        super().__init__(registry, metrics.API_MODEL_INFO)

    async def run(self, check_seconds: float) -> None:
        """Refresh every ``check_seconds`` until cancelled (Redis and file I/O in a thread)."""
        while True:
            await asyncio.sleep(check_seconds)
            await anyio.to_thread.run_sync(self.refresh)
