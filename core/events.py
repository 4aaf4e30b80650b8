"""The event contract: what producers write to ``customer-activity`` and ``customer-transactions``.

Every event is one JSON object with an envelope and a typed payload::

    {"type": "play", "event_id": "e-1", "customer_id": "c-42",
     "event_time": "2026-01-05T10:00:00Z", "schema_version": 1,
     "payload": {"session_id": "s-7", "item_id": "song-9", "duration_s": 212.0}}

* ``event_id`` is stable: the same real-world event always carries the same id, so a
  replayed event can be recognised and is never counted twice.
* ``customer_id`` is the Kafka message key, which keeps one customer's events in order.
* ``event_time`` is when it happened. A time zone is required; it is normalised to UTC.
* ``type`` selects the payload schema (see :data:`ACTIVITY_TYPES` and
  :data:`TRANSACTION_TYPES`).

Unknown extra fields are ignored (tolerant reader), so producers can add fields before
consumers know them. The JSON Schema of each topic is published in ``docs/schemas/``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Literal

import msgspec

SCHEMA_VERSION: Literal[1] = 1

TopicKind = Literal["activity", "transactions"]

ID_MAX_LENGTH = 128  # characters of an id (customer, event, ...), here and in the API
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]
OptionalIdentifier = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)] | None
ShortText = Annotated[str, msgspec.Meta(max_length=1024)]
UtcDatetime = Annotated[
    datetime, msgspec.Meta(tz=True, description="RFC 3339 time with a time zone; stored as UTC.")
]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code.")]
Level = Literal["free", "paid"]

# Events older than this are almost always a unit or epoch bug (e.g. ts=0), not history.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


# --- Payloads ------------------------------------------------------------------------------


class SessionStartPayload(msgspec.Struct, kw_only=True):
    """A customer opened the app or site."""

    session_id: Identifier
    level: Level = "free"
    device: ShortText | None = None


class SessionEndPayload(msgspec.Struct, kw_only=True):
    """A session ended; ``duration_s`` is its length in seconds."""

    session_id: Identifier
    duration_s: Seconds


class PageViewPayload(msgspec.Struct, kw_only=True):
    """Any page not covered by a more specific event type."""

    page: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    session_id: OptionalIdentifier = None


class PlayPayload(msgspec.Struct, kw_only=True):
    """An item (song, video, article) was consumed for ``duration_s`` seconds."""

    session_id: OptionalIdentifier = None
    item_id: OptionalIdentifier = None
    duration_s: Seconds = 0.0


class ItemReactionPayload(msgspec.Struct, kw_only=True):
    """A like or a dislike of an item."""

    session_id: OptionalIdentifier = None
    item_id: OptionalIdentifier = None


class AddFriendPayload(msgspec.Struct, kw_only=True):
    session_id: OptionalIdentifier = None
    friend_id: OptionalIdentifier = None


class AddToPlaylistPayload(msgspec.Struct, kw_only=True):
    session_id: OptionalIdentifier = None
    item_id: OptionalIdentifier = None
    playlist_id: OptionalIdentifier = None


class HelpPayload(msgspec.Struct, kw_only=True):
    """The customer opened a help page."""

    session_id: OptionalIdentifier = None
    topic: ShortText | None = None


class ErrorPayload(msgspec.Struct, kw_only=True):
    """The customer saw an error page."""

    session_id: OptionalIdentifier = None
    code: int | None = None
    message: ShortText | None = None


class PlanChangePayload(msgspec.Struct, kw_only=True):
    """An upgrade or downgrade between plan levels."""

    from_level: Level
    to_level: Level


class CancellationPayload(msgspec.Struct, kw_only=True):
    """The customer cancelled the subscription (the churn event of activity data)."""

    reason: ShortText | None = None


class LineItem(msgspec.Struct, kw_only=True):
    """One line of an order. ``unit_price`` is in the order's currency."""

    sku: Identifier
    quantity: int
    unit_price: float
    description: ShortText = ""


class PurchasePayload(msgspec.Struct, kw_only=True):
    """An order. ``amount`` is the order total and ``quantity`` the number of items."""

    order_id: Identifier
    amount: NonNegativeFloat
    currency: Currency = "GBP"
    quantity: NonNegativeInt = 0
    lines: list[LineItem] = msgspec.field(default_factory=list)


class RefundPayload(msgspec.Struct, kw_only=True):
    """Money returned to the customer: ``amount`` and ``quantity`` are positive magnitudes."""

    order_id: Identifier
    amount: NonNegativeFloat
    currency: Currency = "GBP"
    quantity: NonNegativeInt = 0
    original_order_id: OptionalIdentifier = None
    lines: list[LineItem] = msgspec.field(default_factory=list)


# --- Envelope ------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, kw_only=True, tag_field="type"):
    event_id: Identifier
    customer_id: Identifier
    event_time: UtcDatetime
    schema_version: Literal[1] = SCHEMA_VERSION

    topic_kind: ClassVar[TopicKind]

    def __post_init__(self) -> None:
        # Normalise +02:00 etc. to UTC so every consumer sees one form. The identity check
        # first: it is the common case and far cheaper than utcoffset().
        if self.event_time.tzinfo is not UTC:
            self.event_time = self.event_time.astimezone(UTC)

    # The event type, e.g. "play" (the JSON ``type`` field): a class attribute set below for
    # every event class, so reading it on the hot path costs no property call.
    type: ClassVar[str]


class _ActivityEnvelope(_Envelope, kw_only=True):
    topic_kind: ClassVar[TopicKind] = "activity"


class _TransactionEnvelope(_Envelope, kw_only=True):
    topic_kind: ClassVar[TopicKind] = "transactions"


class SessionStart(_ActivityEnvelope, tag="session_start", kw_only=True):
    payload: SessionStartPayload


class SessionEnd(_ActivityEnvelope, tag="session_end", kw_only=True):
    payload: SessionEndPayload


class PageView(_ActivityEnvelope, tag="page_view", kw_only=True):
    payload: PageViewPayload


class Play(_ActivityEnvelope, tag="play", kw_only=True):
    payload: PlayPayload


class Like(_ActivityEnvelope, tag="like", kw_only=True):
    payload: ItemReactionPayload


class Dislike(_ActivityEnvelope, tag="dislike", kw_only=True):
    payload: ItemReactionPayload


class AddFriend(_ActivityEnvelope, tag="add_friend", kw_only=True):
    payload: AddFriendPayload


class AddToPlaylist(_ActivityEnvelope, tag="add_to_playlist", kw_only=True):
    payload: AddToPlaylistPayload


class Help(_ActivityEnvelope, tag="help", kw_only=True):
    payload: HelpPayload


class Error(_ActivityEnvelope, tag="error", kw_only=True):
    payload: ErrorPayload


class Upgrade(_ActivityEnvelope, tag="upgrade", kw_only=True):
    payload: PlanChangePayload


class Downgrade(_ActivityEnvelope, tag="downgrade", kw_only=True):
    payload: PlanChangePayload


class Cancellation(_ActivityEnvelope, tag="cancellation", kw_only=True):
    payload: CancellationPayload


class Purchase(_TransactionEnvelope, tag="purchase", kw_only=True):
    payload: PurchasePayload


class Refund(_TransactionEnvelope, tag="refund", kw_only=True):
    payload: RefundPayload


ActivityEvent = (
    SessionStart
    | SessionEnd
    | PageView
    | Play
    | Like
    | Dislike
    | AddFriend
    | AddToPlaylist
    | Help
    | Error
    | Upgrade
    | Downgrade
    | Cancellation
)
TransactionEvent = Purchase | Refund
Event = ActivityEvent | TransactionEvent

ACTIVITY_CLASSES: tuple[type[_Envelope], ...] = ActivityEvent.__args__
TRANSACTION_CLASSES: tuple[type[_Envelope], ...] = TransactionEvent.__args__
EVENT_CLASSES = {str(c.__struct_config__.tag): c for c in ACTIVITY_CLASSES + TRANSACTION_CLASSES}
for _tag, _cls in EVENT_CLASSES.items():
    _cls.type = _tag
ACTIVITY_TYPES = tuple(str(c.__struct_config__.tag) for c in ACTIVITY_CLASSES)
TRANSACTION_TYPES = tuple(str(c.__struct_config__.tag) for c in TRANSACTION_CLASSES)


# --- Validation ----------------------------------------------------------------------------


class EventValidationError(ValueError):
    """An event that does not follow the contract.

    ``field`` is the dotted path of the offending field (``None`` when the whole document
    is at fault, e.g. it is not JSON), ``reason`` says what is wrong in plain words,
    ``code`` is a short machine-readable category (for metrics and the dead-letter topic)
    and ``line`` is the 1-based input line when the event came from a file.
    """

    def __init__(
        self,
        reason: str,
        field: str | None = None,
        line: int | None = None,
        code: str = "invalid_value",
    ):
        self.reason = reason
        self.field = field
        self.line = line
        self.code = code
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.reason}"

    def at_line(self, line: int) -> EventValidationError:
        return EventValidationError(self.reason, self.field, line, self.code)


_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_INVALID_TAG = re.compile(r"^Invalid value '(?P<value>.*)'$")


def _path_to_field(path: str) -> str:
    """``.payload.lines[2].sku`` -> ``payload.lines[2].sku``."""
    return path[1:] if path.startswith(".") else path


def validation_error_from_msgspec(exc: msgspec.MsgspecError) -> EventValidationError:
    """Translate a msgspec error into one that names the field in plain words.

    >>> err = validation_error_from_msgspec(msgspec.ValidationError(
    ...     "Expected `str`, got `int` - at `$.customer_id`"))
    >>> (err.field, err.reason)
    ('customer_id', 'expected str, got int')
    >>> validation_error_from_msgspec(msgspec.ValidationError(
    ...     "Object missing required field `order_id` - at `$.payload`")).field
    'payload.order_id'
    """
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return EventValidationError(f"not valid JSON ({text})", code="invalid_json")
    match = _AT_PATH.match(text)
    assert match is not None  # the pattern matches any string
    message, path = match.group("msg"), _path_to_field(match.group("path") or "")
    missing = _MISSING.match(message)
    if missing:
        field = f"{path}.{missing.group('name')}" if path else missing.group("name")
        return EventValidationError("required field is missing", field, code="missing_field")
    invalid_tag = _INVALID_TAG.match(message)
    if invalid_tag and path == "type":
        known = ", ".join(sorted(EVENT_CLASSES))
        return EventValidationError(
            f"unknown event type '{invalid_tag.group('value')}' (known: {known})",
            "type",
            code="unknown_type",
        )
    reason = message.replace("`", "")
    reason = reason[0].lower() + reason[1:] if reason else reason
    code = "invalid_time" if path == "event_time" else "invalid_value"
    return EventValidationError(reason, path or None, code=code)


_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_ENCODER = msgspec.json.Encoder()


class EventValidator:
    """Decodes and checks raw event bytes against the contract.

    Checks, in order: size, JSON syntax, schema (types, required fields, known ``type``),
    time zone, and that ``event_time`` is not implausibly far in the future. With
    ``topic_kind`` set, events of the other topic's types are rejected too.

    >>> v = EventValidator(max_bytes=65536, max_future_skew=timedelta(days=1))
    >>> event = v.decode(b'{"type": "like", "event_id": "e1", "customer_id": "c1",'
    ...                  b' "event_time": "2026-01-05T12:00:00+02:00", "payload": {}}')
    >>> event.type, event.event_time.isoformat()
    ('like', '2026-01-05T10:00:00+00:00')
    >>> v.decode(b'{"type": "like", "event_id": "e1", "event_time": "2026-01-05T12:00:00Z",'
    ...          b' "payload": {}}')
    Traceback (most recent call last):
    ...
    core.events.EventValidationError: field 'customer_id': required field is missing
    """

    def __init__(
        self,
        max_bytes: int = 65536,
        max_future_skew: timedelta = timedelta(days=1),
        topic_kind: TopicKind | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_future_skew = max_future_skew
        self.topic_kind = topic_kind

    def decode(self, data: bytes | str, now: datetime | None = None) -> Event:
        """Return the validated event, or raise :class:`EventValidationError`."""
        if len(data) > self.max_bytes:
            raise EventValidationError(
                f"event is {len(data)} bytes, more than the limit of {self.max_bytes}",
                code="too_large",
            )
        try:
            event = _DECODER.decode(data)
        except msgspec.MsgspecError as exc:
            raise validation_error_from_msgspec(exc) from None
        if self.topic_kind is not None and event.topic_kind != self.topic_kind:
            raise EventValidationError(
                f"a '{event.type}' event belongs on the {event.topic_kind} topic, "
                f"not {self.topic_kind}",
                "type",
                code="wrong_topic",
            )
        latest = (now or datetime.now(UTC)) + self.max_future_skew
        if event.event_time > latest:
            hours = self.max_future_skew.total_seconds() / 3600
            raise EventValidationError(
                f"{event.event_time.isoformat()} is more than {hours:g} h in the future",
                "event_time",
                code="future_time",
            )
        if event.event_time < EARLIEST_EVENT_TIME:
            raise EventValidationError(
                f"{event.event_time.isoformat()} is before 2000-01-01 (a unit or epoch bug?)",
                "event_time",
                code="past_time",
            )
        return event


def decode_event(data: bytes | str) -> Event:
    """Decode JSON already known to be a valid event (e.g. read back from the archive):
    the schema is checked, the size and time bounds of :class:`EventValidator` are not."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise validation_error_from_msgspec(exc) from None


def encode_event(event: Event) -> bytes:
    """The canonical JSON encoding of an event (UTC times, ``type`` first)."""
    return _ENCODER.encode(event)


def topic_kind_of(event_type: str) -> TopicKind:
    """Which input topic an event type belongs on.

    >>> topic_kind_of("purchase"), topic_kind_of("play")
    ('transactions', 'activity')
    """
    try:
        return EVENT_CLASSES[event_type].topic_kind
    except KeyError:
        raise EventValidationError(
            f"unknown event type '{event_type}'", "type", code="unknown_type"
        ) from None
