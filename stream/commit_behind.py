"""A batch's Redis commit running on a thread of its own while the next batch is worked on.

The commit script (:meth:`core.store.FeatureStore.commit_prepared`) runs in Redis, on
another core: for a batch of ~2,000 customers it holds the worker ~20 µs a customer
waiting for the reply. A :class:`PendingCommit` sends it from a daemon thread (which
waits on the socket without holding the GIL) so the worker decodes, applies and scores
the next batch meanwhile; the next batch waits for it before its own commit, so commits
still reach Redis one at a time, in order, each behind the fences the previous one set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from stream.messages import RawMessage

T = TypeVar("T")


class CommitFailed(RuntimeError):
    """The commit of an earlier batch failed (Redis error, fence moved): its ``messages``
    are not applied, and what the worker holds in memory for their partitions is ahead of
    Redis."""

    def __init__(self, messages: Sequence[RawMessage], error: BaseException) -> None:
        self.messages = messages
        self.error = error
        super().__init__(f"the commit of a batch of {len(messages)} failed: {error!r}")


class CommitStillRunning(RuntimeError):
    """An earlier batch's commit did not finish in the time given (Redis unreachable)."""


class PendingCommit(Generic[T]):
    """``run`` (a batch's commit) started on a daemon thread: a commit stuck on a Redis
    that went away never keeps the process from exiting."""

    def __init__(self, messages: Sequence[RawMessage], run: Callable[[], T]) -> None:
        self.messages = messages
        self._run = run
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._target, name="commit-behind", daemon=True).start()

    def _target(self) -> None:
        try:
            self._result = self._run()
        except BaseException as exc:  # handed to whoever waits: see result()
            self._error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the commit; return what it returned. Raises :class:`CommitFailed` when
        it failed, :class:`CommitStillRunning` when it is not done within ``timeout``."""
        if not self._done.wait(timeout):
            raise CommitStillRunning(f"a batch's commit is still running after {timeout} s")
        if self._error is not None:
            raise CommitFailed(self.messages, self._error) from self._error
        return self._result  # type: ignore[return-value]
