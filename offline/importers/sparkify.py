"""The Sparkify event log (JSON lines) as canonical activity events.

Each line of a Sparkify log is one page request of a music-streaming app::

    {"ts": 1538352117000, "userId": "30", "sessionId": 29, "page": "NextSong",
     "auth": "Logged In", "level": "paid", "itemInSession": 50, "status": 200,
     "userAgent": "Mozilla/5.0 ...", "artist": "Martha Tilston", "song": "Rockpools",
     "length": 277.89, ...}

``ts`` is epoch milliseconds (UTC). Pages map to event types as follows (see
:data:`PAGE_TYPES`): ``NextSong`` → ``play`` (the song's ``length`` in seconds as
``duration_s``), ``Thumbs Up``/``Thumbs Down`` → ``like``/``dislike``, ``Add to Playlist``,
``Add Friend``, ``Help``, ``Error`` (the HTTP ``status`` as the code), ``Submit Upgrade`` /
``Submit Downgrade`` (free → paid / paid → free), ``Cancellation Confirmation`` →
``cancellation``; every other page → ``page_view`` with the page name in snake case
(``Roll Advert`` → ``roll_advert``).

Identifiers, all deterministic (the same row always gives the same ids):

* customer: the ``userId`` (``30.0`` from a numeric export becomes ``"30"``);
* event: ``spk-{userId}-{sessionId}-{itemInSession}-{ts}``;
* session: ``{userId}-s{sessionId}``; song: ``song-`` and 16 hex digits of a hash of
  artist and title. A like, dislike or playlist addition refers to the last song played in
  the same session (Sparkify does not log which song it was).

Sessions: a ``session_start`` is derived at a session's first row (with the plan level and
the device, ``ios``/``android``/``web`` from the user agent) and a ``session_end`` at its
last row (``duration_s`` = last ``ts`` - first ``ts``). A session ends when the user's next
row carries another ``sessionId`` or comes more than ``session_gap_s`` after the previous one
(the usual inactivity rule), or at the end of the input.

Output order: events leave in event-time order when the input is in ``ts`` order (a
reorder buffer of one session gap holds them until the derived ``session_end`` events
are known). Rows that arrive earlier than events already written are still converted and
counted as ``late_rows``; the output is then not fully sorted (``churnstream replay``
sorts such files itself).

Rows without a ``userId`` (logged-out and guest visitors), lines that are not JSON objects,
rows missing ``ts``, ``page`` or ``sessionId`` and rows whose event breaks the contract are
rejected with their line number and the reason; the import goes on.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from core.events import (
    EARLIEST_EVENT_TIME,
    AddFriend,
    AddFriendPayload,
    AddToPlaylist,
    AddToPlaylistPayload,
    Cancellation,
    CancellationPayload,
    Dislike,
    Downgrade,
    Error,
    ErrorPayload,
    Event,
    EventValidationError,
    EventValidator,
    Help,
    HelpPayload,
    ItemReactionPayload,
    Like,
    PageView,
    PageViewPayload,
    PlanChangePayload,
    Play,
    PlayPayload,
    SessionEnd,
    SessionEndPayload,
    SessionStart,
    SessionStartPayload,
    Upgrade,
    encode_event,
)
from offline.importers.reorder import ReorderBuffer

SPARKIFY_FIELDS = (
    "ts", "userId", "sessionId", "page", "auth", "method", "status", "level", "itemInSession",
    "location", "userAgent", "lastName", "firstName", "registration", "gender", "artist",
    "song", "length",
)  # fmt: skip
PAGE_TYPES = {
    "NextSong": "play",
    "Thumbs Up": "like",
    "Thumbs Down": "dislike",
    "Add to Playlist": "add_to_playlist",
    "Add Friend": "add_friend",
    "Help": "help",
    "Error": "error",
    "Submit Upgrade": "upgrade",
    "Submit Downgrade": "downgrade",
    "Cancellation Confirmation": "cancellation",
}
DEFAULT_SESSION_GAP_S = 30 * 60
MAX_SESSION_S = 7 * 86400  # the contract's limit on a session's duration
_SWEEP_EVERY_MS = 60_000  # close idle sessions and release events once per event-time minute
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SparkifyRow(msgspec.Struct, rename="camel"):
    """The fields of a Sparkify row that the events use; the others are ignored."""

    ts: int | float | None = None
    user_id: str | int | float | None = None
    session_id: int | str | None = None
    page: str | None = None
    status: int | None = None
    level: str | None = None
    item_in_session: int | None = None
    user_agent: str | None = None
    artist: str | None = None
    song: str | None = None
    length: float | None = None


class RowRejected(ValueError):
    """One row cannot be converted; ``code`` is a short category, ``field`` the culprit."""

    def __init__(self, reason: str, field: str | None = None, code: str = "invalid_value"):
        super().__init__(reason)
        self.reason, self.field, self.code = reason, field, code


@dataclass
class SparkifyReport:
    """What an import did. Times are epoch milliseconds (UTC) of the converted rows."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    rejects_by_code: Counter[str] = field(default_factory=Counter)
    pages_as_page_view: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    sessions: int = 0
    late_rows: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def rejected(self) -> int:
        return sum(self.rejects_by_code.values())

    def to_dict(self) -> dict[str, Any]:
        def iso(ms: int | None) -> str | None:
            return None if ms is None else _to_datetime(ms).isoformat().replace("+00:00", "Z")

        return {
            "files": self.files,
            "rows": self.rows,
            "events": self.events,
            "rejected": self.rejected,
            "rejects_by_code": dict(self.rejects_by_code.most_common()),
            "events_by_type": dict(self.events_by_type.most_common()),
            "pages_as_page_view": dict(self.pages_as_page_view.most_common()),
            "customers": len(self.customers),
            "sessions": self.sessions,
            "late_rows": self.late_rows,
            "first_event_time": iso(self.first_ms),
            "last_event_time": iso(self.last_ms),
        }


def page_name(page: str) -> str:
    """A Sparkify page as a ``page_view`` page name.

    >>> page_name("Roll Advert"), page_name("Save Settings"), page_name("Home")
    ('roll_advert', 'save_settings', 'home')
    """
    return re.sub(r"[^a-z0-9]+", "_", page.strip().lower()).strip("_") or "unknown"


def song_id(artist: str | None, song: str | None) -> str | None:
    """A short stable id for a song (``None`` without a title).

    >>> song_id("Martha Tilston", "Rockpools")
    'song-36c9a863e0f9a4a7'
    """
    if not song:
        return None
    digest = hashlib.blake2b(f"{artist or ''}\x1f{song}".encode(), digest_size=8).hexdigest()
    return f"song-{digest}"


def device_of(user_agent: str | None) -> str | None:
    """``ios``, ``android`` or ``web`` from a browser user agent (``None`` without one).

    >>> device_of('"Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X)"')
    'ios'
    >>> device_of("Mozilla/5.0 (Windows NT 6.1; WOW64) Chrome/36.0"), device_of(None)
    ('web', None)
    """
    if not user_agent:
        return None
    if "iPhone" in user_agent or "iPad" in user_agent:
        return "ios"
    if "Android" in user_agent:
        return "android"
    return "web"


def customer_id_of(user_id: str | int | float | None) -> str | None:
    """The customer id of a ``userId``; ``None`` for a missing or empty one.

    >>> customer_id_of("30"), customer_id_of(30.0), customer_id_of(" "), customer_id_of(None)
    ('30', '30', None, None)
    """
    if user_id is None:
        return None
    if isinstance(user_id, float) and user_id.is_integer():
        user_id = int(user_id)
    text = str(user_id).strip()
    return text or None


def _to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass
class _OpenSession:
    session: str
    first_ms: int
    last_ms: int
    last_song: str | None = None


# A converted event waiting in the reorder buffer: (type, customer id, canonical JSON).
Converted = tuple[str, str, bytes]


class SparkifyConverter:
    """Turns rows into events, derives sessions, and releases events in time order.

    Feed rows with :meth:`add`, take what is ready with :meth:`ready` after each row, and
    :meth:`finish` at the end of the input.
    """

    def __init__(self, report: SparkifyReport, session_gap_s: int = DEFAULT_SESSION_GAP_S):
        self.report = report
        self.gap_ms = session_gap_s * 1000
        self.buffer: ReorderBuffer[Converted] = ReorderBuffer(horizon_ms=self.gap_ms)
        self.open: dict[str, _OpenSession] = {}
        self.newest_ms: int | None = None
        self._swept_at_ms: int | None = None
        # Historic data: only the contract's shape and bounds matter, not the clock.
        self._validator = EventValidator(max_future_skew=timedelta(days=365 * 100))

    def add(self, row: SparkifyRow) -> None:
        """Convert one row; raises :class:`RowRejected` (nothing is kept then)."""
        customer = customer_id_of(row.user_id)
        if customer is None:
            raise RowRejected("no userId (a logged-out or guest visitor)", "userId", "no_user")
        if row.ts is None:
            raise RowRejected("required field is missing", "ts", "missing_field")
        if row.page is None or not row.page.strip():
            raise RowRejected("required field is missing", "page", "missing_field")
        if row.session_id is None or str(row.session_id).strip() == "":
            raise RowRejected("required field is missing", "sessionId", "missing_field")
        ts = int(row.ts)
        at = _to_datetime(ts)
        if at < EARLIEST_EVENT_TIME:
            raise RowRejected(
                f"{ts} is {at:%Y-%m-%d}, before 2000: ts must be epoch milliseconds",
                "ts",
                "invalid_time",
            )
        session = str(row.session_id).strip()
        current = self.open.get(customer)
        continues = (
            current is not None
            and current.session == session
            and ts - current.last_ms <= self.gap_ms
        )
        last_song = current.last_song if continues and current is not None else None
        event = self._event(row, customer, session, ts, at, last_song)
        encoded = self._checked(event)

        if not continues:
            if current is not None:
                self._close(customer, current)
            current = _OpenSession(session, ts, ts)
            self.open[customer] = current
            start = SessionStart(
                event_id=f"spk-{customer}-{session}-start-{ts}",
                customer_id=customer,
                event_time=at,
                payload=SessionStartPayload(
                    session_id=f"{customer}-s{session}",
                    level="paid" if row.level == "paid" else "free",
                    device=device_of(row.user_agent),
                ),
            )
            self._push(ts, start.type, customer, self._checked(start))
            self.report.sessions += 1
        assert current is not None
        current.last_ms = max(current.last_ms, ts)
        if event.type == "play":
            current.last_song = song_id(row.artist, row.song)
        if self.buffer.is_late(ts):
            self.report.late_rows += 1
        self._push(ts, event.type, customer, encoded)
        if event.type == "page_view":
            self.report.pages_as_page_view[row.page.strip()] += 1
        self.report.customers.add(customer)
        if self.newest_ms is None or ts > self.newest_ms:
            self.newest_ms = ts
        if self.report.first_ms is None or ts < self.report.first_ms:
            self.report.first_ms = ts
        if self.report.last_ms is None or ts > self.report.last_ms:
            self.report.last_ms = ts

    def ready(self) -> Iterator[Converted]:
        """Events that can no longer be preceded by a derived one, oldest first."""
        newest = self.newest_ms
        if newest is None:
            return
        if self._swept_at_ms is not None and newest - self._swept_at_ms < _SWEEP_EVERY_MS:
            return
        self._swept_at_ms = newest
        # Close the sessions idle for more than a gap first: their session_end is older
        # than anything released below, so it must be in the buffer before releasing.
        idle_before = newest - self.gap_ms
        for customer, session in list(self.open.items()):
            if session.last_ms < idle_before:
                self._close(customer, session)
                del self.open[customer]
        yield from self.buffer.release(newest)

    def finish(self) -> Iterator[Converted]:
        """Close every open session and release everything left."""
        for customer, session in self.open.items():
            self._close(customer, session)
        self.open.clear()
        yield from self.buffer.drain()

    # --- helpers ---------------------------------------------------------------------------

    def _push(self, ts: int, event_type: str, customer: str, encoded: bytes) -> None:
        self.buffer.push(ts, (event_type, customer, encoded))

    def _checked(self, event: Event) -> bytes:
        encoded = encode_event(event)
        try:
            self._validator.decode(encoded)
        except EventValidationError as exc:
            raise RowRejected(f"the {event.type} event {exc}", exc.field, exc.code) from None
        return encoded

    def _close(self, customer: str, session: _OpenSession) -> None:
        duration = min((session.last_ms - session.first_ms) / 1000, MAX_SESSION_S)
        end = SessionEnd(
            event_id=f"spk-{customer}-{session.session}-end-{session.first_ms}",
            customer_id=customer,
            event_time=_to_datetime(session.last_ms),
            payload=SessionEndPayload(
                session_id=f"{customer}-s{session.session}", duration_s=duration
            ),
        )
        self._push(session.last_ms, end.type, customer, encode_event(end))

    def _event(
        self,
        row: SparkifyRow,
        customer: str,
        session: str,
        ts: int,
        at: datetime,
        last_song: str | None,
    ) -> Event:
        page = (row.page or "").strip()
        kind = PAGE_TYPES.get(page, "page_view")
        envelope: dict[str, Any] = {
            "event_id": f"spk-{customer}-{session}-{row.item_in_session}-{ts}",
            "customer_id": customer,
            "event_time": at,
        }
        sid = f"{customer}-s{session}"
        if kind == "play":
            length = row.length if row.length is not None and row.length >= 0 else 0.0
            song = song_id(row.artist, row.song)
            return Play(
                **envelope, payload=PlayPayload(session_id=sid, item_id=song, duration_s=length)
            )
        if kind in ("like", "dislike"):
            cls = Like if kind == "like" else Dislike
            return cls(**envelope, payload=ItemReactionPayload(session_id=sid, item_id=last_song))
        if kind == "add_to_playlist":
            payload = AddToPlaylistPayload(session_id=sid, item_id=last_song)
            return AddToPlaylist(**envelope, payload=payload)
        if kind == "add_friend":
            return AddFriend(**envelope, payload=AddFriendPayload(session_id=sid))
        if kind == "help":
            return Help(**envelope, payload=HelpPayload(session_id=sid))
        if kind == "error":
            return Error(**envelope, payload=ErrorPayload(session_id=sid, code=row.status))
        if kind == "upgrade":
            return Upgrade(
                **envelope, payload=PlanChangePayload(from_level="free", to_level="paid")
            )
        if kind == "downgrade":
            payload_change = PlanChangePayload(from_level="paid", to_level="free")
            return Downgrade(**envelope, payload=payload_change)
        if kind == "cancellation":
            return Cancellation(**envelope, payload=CancellationPayload())
        return PageView(**envelope, payload=PageViewPayload(page=page_name(page), session_id=sid))
