"""Raw Kafka messages as the worker receives them, and what it makes of them before
applying anything: the valid events, and a dead letter (with a reason, a code and the
field) for each message it cannot use.

Cost: one msgspec decode and validation per message (~4 µs), one CRC32 of the key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from core.aggregates import CustomerAggregates
from core.dlq import DeadLetter
from core.events import Event, EventValidationError, EventValidator
from core.keys import Keys
from core.settings import Settings
from core.topics import Topics


class RawMessage(NamedTuple):
    """One Kafka message as the worker received it. A named tuple: one is made per
    message, and a tuple costs a third of a frozen dataclass to build."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def validators(settings: Settings) -> dict[str, EventValidator]:
    """The event validator of each input topic (by topic name), with the settings' size
    and clock-skew limits."""
    topics = Topics.from_settings(settings)
    skew = timedelta(seconds=settings.max_future_skew_seconds)
    return {
        topics.activity: EventValidator(settings.max_event_bytes, skew, "activity"),
        topics.transactions: EventValidator(settings.max_event_bytes, skew, "transactions"),
    }


def decode_messages(
    messages: Sequence[RawMessage],
    validators: Mapping[str, EventValidator],
    keys: Keys,
    now: float,
) -> tuple[list[tuple[RawMessage, Event]], list[DeadLetter]]:
    """The valid events of ``messages`` (each with its message), and a dead letter for each
    invalid one: undecodable or invalid, keyed by another id than its customer's, or on
    another partition than its customer's (CRC32 of the key, as ``keys`` says)."""
    events: list[tuple[RawMessage, Event]] = []
    letters: list[DeadLetter] = []
    now_dt = datetime.fromtimestamp(now, UTC)
    for m in messages:
        try:
            event = validators[m.topic].decode(m.value, now_dt)
            if m.key is not None and m.key != event.customer_id.encode():
                raise EventValidationError(
                    f"message key {m.key!r} differs from customer_id "
                    f"{event.customer_id!r}: key messages by customer id",
                    "customer_id",
                    code="key_mismatch",
                )
            # The key is the customer id here (checked above): hash it as it is.
            expected = (
                keys.shard_of(event.customer_id) if m.key is None else keys.shard_of_key(m.key)
            )
            if expected != m.partition:
                raise EventValidationError(
                    f"customer {event.customer_id!r} belongs to partition {expected} "
                    f"(CRC32 of the key modulo {keys.partitions}, librdkafka's "
                    f"default partitioner) but arrived on partition {m.partition}: "
                    "produce with that partitioner",
                    "customer_id",
                    code="wrong_partition",
                )
        except EventValidationError as error:
            letters.append(
                DeadLetter(
                    value=m.value,
                    reason=str(error),
                    code=error.code,
                    field=error.field,
                    source_topic=m.topic,
                    source_partition=m.partition,
                    source_offset=m.offset,
                    key=m.key,
                )
            )
            continue
        events.append((m, event))
    return events, letters


def too_late_letter(m: RawMessage, agg: CustomerAggregates, dedup_days: int) -> DeadLetter:
    newest = datetime.fromtimestamp(agg.last_activity, UTC).date().isoformat()
    return DeadLetter(
        value=m.value,
        reason=f"event_time is more than {dedup_days} days (CHURN_DEDUP_DAYS) before the "
        f"newest activity event of its customer ({newest}): a duplicate could no longer "
        "be recognised, so it is not counted",
        code="too_late",
        field="event_time",
        source_topic=m.topic,
        source_partition=m.partition,
        source_offset=m.offset,
        key=m.key,
    )


def count_codes(letters: Sequence[DeadLetter]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for letter in letters:
        counts[letter.code] += 1
    return dict(counts)
