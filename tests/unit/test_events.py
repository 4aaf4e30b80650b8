"""The event contract: valid events round-trip; invalid ones fail naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from core.events import (
    ACTIVITY_TYPES,
    EVENT_CLASSES,
    TRANSACTION_TYPES,
    EventValidationError,
    EventValidator,
    encode_event,
    topic_kind_of,
)
from core.schema import schema_file_name, stale_schemas, topic_schemas
from core.topics import ACTIVITY, TRANSACTIONS

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"

MINIMAL_PAYLOADS = {
    "session_start": {"session_id": "s1", "level": "paid"},
    "session_end": {"session_id": "s1", "duration_s": 600},
    "page_view": {"page": "Home"},
    "play": {"item_id": "song-1", "duration_s": 200.5},
    "like": {},
    "dislike": {"item_id": "song-2"},
    "add_friend": {"friend_id": "c9"},
    "add_to_playlist": {"item_id": "song-1", "playlist_id": "p1"},
    "help": {"topic": "billing"},
    "error": {"code": 500},
    "upgrade": {"from_level": "free", "to_level": "paid"},
    "downgrade": {"from_level": "paid", "to_level": "free"},
    "cancellation": {"reason": "too expensive"},
    "purchase": {
        "order_id": "536365",
        "amount": 15.3,
        "currency": "GBP",
        "quantity": 6,
        "lines": [{"sku": "85123A", "quantity": 6, "unit_price": 2.55, "description": "T-LIGHT"}],
    },
    "refund": {"order_id": "C536379", "amount": 27.5, "quantity": 1},
}


def event_json(event_type: str = "like", **overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "type": event_type,
        "event_id": "e-1",
        "customer_id": "c-1",
        "event_time": "2026-02-01T10:00:00Z",
        "schema_version": 1,
        "payload": MINIMAL_PAYLOADS[event_type],
    }
    document.update(overrides)
    return document


def decode(document: object, **validator_args: object) -> object:
    return EventValidator(**validator_args).decode(json.dumps(document).encode(), now=NOW)  # type: ignore[arg-type]


def test_contract_covers_required_types() -> None:
    required_activity = {
        "session_start", "page_view", "play", "like", "dislike", "add_friend",
        "add_to_playlist", "help", "error", "upgrade", "downgrade", "cancellation",
    }  # fmt: skip
    assert required_activity <= set(ACTIVITY_TYPES)
    assert set(TRANSACTION_TYPES) == {"purchase", "refund"}
    assert set(MINIMAL_PAYLOADS) == set(EVENT_CLASSES)


@pytest.mark.parametrize("event_type", sorted(MINIMAL_PAYLOADS))
def test_every_type_round_trips_through_canonical_json(event_type: str) -> None:
    event = decode(event_json(event_type))
    assert event.type == event_type  # type: ignore[attr-defined]
    encoded = encode_event(event)  # type: ignore[arg-type]
    again = EventValidator().decode(encoded, now=NOW)
    assert again == event
    assert encode_event(again) == encoded


def test_event_time_is_normalised_to_utc() -> None:
    event = decode(event_json(event_time="2026-02-01T12:30:00+02:30"))
    assert event.event_time == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    assert b'"event_time":"2026-02-01T10:00:00Z"' in encode_event(event)  # type: ignore[arg-type]


def test_unknown_extra_fields_are_ignored() -> None:
    event = decode(event_json(campaign="spring", payload={"item_id": "x", "mood": "happy"}))
    assert b"campaign" not in encode_event(event)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("document", "field", "code"),
    [
        (event_json(type="teleport"), "type", "unknown_type"),
        ({k: v for k, v in event_json().items() if k != "customer_id"}, "customer_id", "missing_field"),
        (event_json(customer_id=42), "customer_id", "invalid_value"),
        (event_json(customer_id=""), "customer_id", "invalid_value"),
        (event_json(event_time="2026-02-01T10:00:00"), "event_time", "invalid_time"),
        (event_json(event_time="last tuesday"), "event_time", "invalid_time"),
        (event_json(event_time="2031-01-01T00:00:00Z"), "event_time", "future_time"),
        (event_json(event_time="1970-01-01T00:00:01Z"), "event_time", "past_time"),
        (event_json(schema_version=2), "schema_version", "invalid_value"),
        (event_json("purchase", payload={"amount": 1.0}), "payload.order_id", "missing_field"),
        (event_json("purchase", payload={"order_id": "o", "amount": -5}), "payload.amount", "invalid_value"),
        (event_json("purchase", payload={"order_id": "o", "amount": 5, "currency": "pounds"}), "payload.currency", "invalid_value"),
        (
            event_json("purchase", payload={"order_id": "o", "amount": 5, "lines": [{"sku": "a", "quantity": "2", "unit_price": 1}]}),
            "payload.lines[0].quantity",
            "invalid_value",
        ),
        (event_json("upgrade", payload={"from_level": "free", "to_level": "gold"}), "payload.to_level", "invalid_value"),
        (event_json("session_end", payload={"session_id": "s", "duration_s": -1}), "payload.duration_s", "invalid_value"),
    ],
)  # fmt: skip
def test_invalid_events_name_the_field(document: object, field: str, code: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        decode(document)
    assert caught.value.field == field
    assert caught.value.code == code
    assert field in str(caught.value)


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(EventValidationError) as caught:
        EventValidator().decode(b'{"type": "like", ', now=NOW)
    assert caught.value.code == "invalid_json"
    assert caught.value.field is None
    with pytest.raises(EventValidationError, match="expected object"):
        EventValidator().decode(b"[1, 2]", now=NOW)


def test_oversized_event_is_rejected_before_parsing() -> None:
    big = event_json("help", payload={"topic": "x" * 1000})
    raw = json.dumps(big).encode()
    with pytest.raises(EventValidationError) as caught:
        EventValidator(max_bytes=len(raw) - 1).decode(raw, now=NOW)
    assert caught.value.code == "too_large"
    assert EventValidator(max_bytes=len(raw)).decode(raw, now=NOW).type == "help"


def test_future_skew_is_configurable() -> None:
    soon = (NOW + timedelta(hours=2)).isoformat()
    document = json.dumps(event_json(event_time=soon)).encode()
    assert EventValidator(max_future_skew=timedelta(hours=3)).decode(document, now=NOW)
    with pytest.raises(EventValidationError, match="1 h in the future"):
        EventValidator(max_future_skew=timedelta(hours=1)).decode(document, now=NOW)


def test_topic_kind_check() -> None:
    purchase = json.dumps(event_json("purchase")).encode()
    assert EventValidator(topic_kind="transactions").decode(purchase, now=NOW).type == "purchase"
    with pytest.raises(EventValidationError) as caught:
        EventValidator(topic_kind="activity").decode(purchase, now=NOW)
    assert caught.value.code == "wrong_topic"
    assert topic_kind_of("refund") == "transactions"
    with pytest.raises(EventValidationError):
        topic_kind_of("teleport")


def test_error_carries_line_number() -> None:
    error = EventValidationError("required field is missing", "customer_id").at_line(7)
    assert str(error) == "line 7: field 'customer_id': required field is missing"


def test_published_schemas_are_up_to_date() -> None:
    assert stale_schemas(SCHEMA_DIR) == [], "run: churnstream schema export"


@pytest.mark.parametrize("event_type", sorted(MINIMAL_PAYLOADS))
def test_canonical_events_validate_against_published_schema(event_type: str) -> None:
    topic = ACTIVITY if topic_kind_of(event_type) == "activity" else TRANSACTIONS
    schema = json.loads((SCHEMA_DIR / schema_file_name(topic)).read_text())
    event = decode(event_json(event_type))
    jsonschema.validate(json.loads(encode_event(event)), schema)  # type: ignore[arg-type]


def test_published_schema_rejects_what_the_validator_rejects() -> None:
    schema = topic_schemas()[schema_file_name(ACTIVITY)]
    bad = event_json()
    del bad["customer_id"]
    with pytest.raises(jsonschema.ValidationError, match="customer_id"):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event_json(type="teleport"), schema)
