"""A day tile's counters and what each event adds to them, and the event-id hashes that
recognise duplicates: the stored format of :mod:`core.aggregates`' tiles.

Money is kept in minor units (cents) and durations in whole seconds, so sums are exact
integers whatever the order events arrive in.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b as _blake2b

import numpy as np

from core.events import ACTIVITY_TYPES, Event

DAY_SECONDS = 86_400

# Counter columns of a day tile, in storage order. Append only: the order is part of the
# stored format (older tiles are shorter and read as zeros for new columns).
COUNTERS: tuple[str, ...] = (
    "session_start",
    "session_end",
    "session_seconds",
    "page_view",
    "play",
    "play_seconds",
    "like",
    "dislike",
    "add_friend",
    "add_to_playlist",
    "help",
    "error",
    "upgrade",
    "downgrade",
    "cancellation",
    "purchase",
    "revenue_cents",
    "items",
    "refund",
    "refund_cents",
    "refund_items",
    "purchase_lines",  # order lines of purchases (0 for orders sent without lines)
    "unit_price_cents",  # unit prices of purchase lines, summed (for the mean price level)
)
N_COUNTERS = len(COUNTERS)
C = {name: index for index, name in enumerate(COUNTERS)}

# One counter per activity event type, named after the type: together, "activity events".
ACTIVITY_COUNTERS = tuple(C[event_type] for event_type in ACTIVITY_TYPES)
TRANSACTION_COUNTERS = (C["purchase"], C["refund"])  # every transaction adds 1 to one

NEVER = -1  # epoch-seconds marker for "no such event yet"
NO_DAY = -1  # day-number marker for "no such day" (days since the epoch are >= 0)


HASH_BITS = 32  # width of an event-id hash: the dedup scope is one customer's one day


def event_hash(event_id: str) -> int:
    """A stable 32-bit hash of an event id (the same in every process and release): the
    low 32 bits of its 8-byte BLAKE2b digest read little-endian, so a 64-bit hash stored
    by an older release reads as the same value once masked (see :func:`narrow_hash`).

    Duplicates are recognised within one customer's one day, so a new event is mistaken
    for a duplicate only if its hash equals one of the n already counted that day:
    probability at most n / 2**32 (about 4e-9 at 18 events a day, 6e-8 at 250).

    >>> event_hash("e-1") == event_hash("e-1"), event_hash("e-1") == event_hash("e-2")
    (True, False)
    >>> event_hash("e-1") < 2**32
    True
    """
    return int.from_bytes(_blake2b(event_id.encode(), digest_size=8).digest()[:4], "little")


def narrow_hash(stored: int) -> int:
    """An event hash stored by an older release (64 bits) as today's 32-bit hash."""
    return stored & 0xFFFF_FFFF


def epoch_seconds(event: Event) -> int:
    """The event's time as whole seconds since the Unix epoch (UTC), rounded down."""
    return int(event.event_time.timestamp() // 1)


def to_cents(amount: float) -> int:
    """Money as integer minor units.

    >>> to_cents(9.99), to_cents(0.005), to_cents(2.675)
    (999, 0, 268)
    """
    return round(amount * 100)


def has_transactions(counters: Sequence[int]) -> bool:
    """Whether a tile's counters (trailing zeros possibly trimmed) count a transaction.

    >>> has_transactions([1, 2]), has_transactions([0] * C["purchase"] + [1])
    (False, True)
    """
    return any(counters[i] for i in TRANSACTION_COUNTERS if i < len(counters))


def day_of_event(event: Event) -> int:
    """The UTC day number (days since the epoch) an event belongs to."""
    return epoch_seconds(event) // DAY_SECONDS


# The event types that set a customer's plan level (see level_set_by).
LEVEL_EVENTS = frozenset({"session_start", "upgrade", "downgrade"})


def level_set_by(event: Event) -> str | None:
    """The plan level ``event`` sets (None: it sets none; see LEVEL_EVENTS)."""
    if event.type == "session_start":
        return str(event.payload.level)  # type: ignore[union-attr]
    if event.type in ("upgrade", "downgrade"):
        return str(event.payload.to_level)  # type: ignore[union-attr]
    return None


# --- How each event type changes a tile's counters ---------------------------------------


def _counter(name: str):  # type: ignore[no-untyped-def]
    index = C[name]

    def count(counts: np.ndarray, row: int, _event: Event) -> None:
        counts[row, index] += 1

    return count


_SESSION_END, _SESSION_SECONDS = C["session_end"], C["session_seconds"]
_PLAY, _PLAY_SECONDS = C["play"], C["play_seconds"]
_PURCHASE, _REVENUE, _ITEMS = C["purchase"], C["revenue_cents"], C["items"]
_LINES, _UNIT_PRICES = C["purchase_lines"], C["unit_price_cents"]
_REFUND, _REFUND_CENTS, _REFUND_ITEMS = C["refund"], C["refund_cents"], C["refund_items"]


def _session_end(counts: np.ndarray, row: int, event: Event) -> None:
    counts[row, _SESSION_END] += 1
    counts[row, _SESSION_SECONDS] += round(event.payload.duration_s)  # type: ignore[union-attr]


def _play(counts: np.ndarray, row: int, event: Event) -> None:
    counts[row, _PLAY] += 1
    counts[row, _PLAY_SECONDS] += round(event.payload.duration_s)  # type: ignore[union-attr]


def _purchase(counts: np.ndarray, row: int, event: Event) -> None:
    payload = event.payload
    counts[row, _PURCHASE] += 1
    counts[row, _REVENUE] += to_cents(payload.amount)  # type: ignore[union-attr]
    counts[row, _ITEMS] += payload.quantity  # type: ignore[union-attr]
    lines = payload.lines  # type: ignore[union-attr]
    if lines:
        counts[row, _LINES] += len(lines)
        counts[row, _UNIT_PRICES] += sum(to_cents(line.unit_price) for line in lines)


def _refund(counts: np.ndarray, row: int, event: Event) -> None:
    payload = event.payload
    counts[row, _REFUND] += 1
    counts[row, _REFUND_CENTS] += to_cents(payload.amount)  # type: ignore[union-attr]
    counts[row, _REFUND_ITEMS] += payload.quantity  # type: ignore[union-attr]


COUNT = {
    "session_start": _counter("session_start"),
    "session_end": _session_end,
    "page_view": _counter("page_view"),
    "play": _play,
    "like": _counter("like"),
    "dislike": _counter("dislike"),
    "add_friend": _counter("add_friend"),
    "add_to_playlist": _counter("add_to_playlist"),
    "help": _counter("help"),
    "error": _counter("error"),
    "upgrade": _counter("upgrade"),
    "downgrade": _counter("downgrade"),
    "cancellation": _counter("cancellation"),
    "purchase": _purchase,
    "refund": _refund,
}
