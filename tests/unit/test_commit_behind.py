"""PendingCommit: a batch's commit on a thread of its own, its result or failure handed to
whoever waits for it."""

from __future__ import annotations

import threading

import pytest

from stream.commit_behind import CommitFailed, CommitStillRunning, PendingCommit
from stream.messages import RawMessage

MESSAGES = [RawMessage("customer-activity", 0, 7, b"c1", b"{}")]


def test_the_result_is_what_the_commit_returned() -> None:
    pending = PendingCommit(MESSAGES, lambda: {3: 12})
    assert pending.result(timeout=5) == {3: 12}
    assert pending.done


def test_a_failed_commit_raises_with_its_messages_and_its_error() -> None:
    def fail() -> dict[int, int]:
        raise ConnectionError("redis went away")

    pending = PendingCommit(MESSAGES, fail)
    with pytest.raises(CommitFailed, match="redis went away") as raised:
        pending.result(timeout=5)
    assert raised.value.messages == MESSAGES
    assert isinstance(raised.value.error, ConnectionError)


def test_a_commit_still_running_is_reported_and_can_be_waited_for_again() -> None:
    release = threading.Event()

    def slow() -> int:
        release.wait(5)
        return 1

    pending = PendingCommit(MESSAGES, slow)
    with pytest.raises(CommitStillRunning):
        pending.result(timeout=0.05)
    assert not pending.done
    release.set()
    assert pending.result(timeout=5) == 1
