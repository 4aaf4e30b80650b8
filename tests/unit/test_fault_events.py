"""The fault suite's ten kinds of malformed messages: the worker's own decoding step
rejects each with its dead-letter code, and each message is unique."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bench.faults.malformed import KINDS, malformed
from core.keys import Keys
from core.settings import Settings
from core.topics import Topics
from stream.messages import RawMessage, decode_messages, validators

WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


SETTINGS = Settings(topic_prefix="unit.", archive_enabled=False, max_event_bytes=4096)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_rejected_by_the_worker_with_its_code(kind: str) -> None:
    topics = Topics.from_prefix("unit.")
    bad = malformed(kind, 3, "C00042", WHEN, max_event_bytes=4096)
    message = RawMessage(topics.for_kind(bad.topic_kind), 0, 17, bad.key, bad.value)
    events, letters = decode_messages(
        [message], validators(SETTINGS), Keys.of(SETTINGS), time.time()
    )
    assert events == []
    assert [letter.code for letter in letters] == [kind]
    assert letters[0].value == bad.value and letters[0].source_offset == 17
    assert letters[0].reason


def test_the_ten_kinds_cover_ten_codes_and_every_message_is_unique() -> None:
    assert len(set(KINDS)) == 10
    values = [malformed(k, n, f"C{n}", WHEN, 4096).value for k in KINDS for n in range(50)]
    assert len(set(values)) == len(values)
    assert all(b"bad-" in v for v in values)


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        malformed("gremlins", 1, "C1", WHEN, 4096)
