"""Ten kinds of malformed messages, one per dead-letter code the worker gives.

Each message carries a token unique to it (``bad-<kind>-<n>``), so its dead letter can be
matched back to it. :func:`malformed` is deterministic: the same arguments give the same
bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.events import TopicKind

# The dead-letter codes (``dlq.code`` header) of the ten kinds, in rotation order.
KINDS: tuple[str, ...] = (
    "invalid_json",
    "missing_field",
    "unknown_type",
    "invalid_value",
    "invalid_time",
    "too_large",
    "wrong_topic",
    "future_time",
    "past_time",
    "key_mismatch",
)


@dataclass(frozen=True)
class Malformed:
    """One bad message: the code it must be rejected with, where it goes, its bytes."""

    kind: str
    topic_kind: TopicKind
    key: bytes
    value: bytes


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def malformed(
    kind: str, n: int, customer_id: str, when: datetime, max_event_bytes: int
) -> Malformed:
    """Bad message number ``n`` of ``kind`` for ``customer_id`` around ``when`` (UTC; the
    future/past kinds move far from it). ``max_event_bytes`` is the worker's size limit.

    >>> m = malformed("wrong_topic", 7, "C1", datetime(2026, 1, 1, tzinfo=UTC), 4096)
    >>> m.topic_kind, b"bad-wrong_topic-7" in m.value
    ('activity', True)
    """
    token = f"bad-{kind}-{n}"
    key = customer_id.encode()
    like: dict[str, object] = {
        "type": "like",
        "event_id": token,
        "customer_id": customer_id,
        "event_time": _iso(when),
        "payload": {},
    }
    activity: TopicKind = "activity"
    if kind == "invalid_json":
        value = json.dumps(like).encode()[:-12]  # cut off mid-document
    elif kind == "missing_field":
        value = json.dumps({k: v for k, v in like.items() if k != "customer_id"}).encode()
    elif kind == "unknown_type":
        value = json.dumps({**like, "type": "teleport"}).encode()
    elif kind == "invalid_value":
        payload = {"order_id": token, "amount": -5.0, "quantity": 1}
        value = json.dumps({**like, "type": "purchase", "payload": payload}).encode()
        activity = "transactions"
    elif kind == "invalid_time":
        value = json.dumps({**like, "event_time": when.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
    elif kind == "too_large":
        value = json.dumps({**like, "padding": "x" * (max_event_bytes + 64)}).encode()
    elif kind == "wrong_topic":  # a valid purchase, sent to the activity topic
        payload = {"order_id": token, "amount": 12.5, "quantity": 1}
        value = json.dumps({**like, "type": "purchase", "payload": payload}).encode()
    elif kind == "future_time":
        value = json.dumps({**like, "event_time": _iso(when + timedelta(days=400))}).encode()
    elif kind == "past_time":
        value = json.dumps({**like, "event_time": "1999-12-31T23:00:00Z"}).encode()
    elif kind == "key_mismatch":  # a valid event keyed by another customer
        value = json.dumps(like).encode()
        key = f"not-{customer_id}".encode()
    else:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return Malformed(kind, activity, key, value)
