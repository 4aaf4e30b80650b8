"""Per-customer aggregates tiled by event-time day: what the online store keeps.

A customer's state is a set of **day tiles** (one per UTC day with events: integer
counters, plus 32-bit hashes of the ids of the events counted in it) and a few scalars
(first and last event times, plan level). Applying events is:

* **order-free** — counters are integer sums and the scalars are min/max or
  latest-by-(time, event id), so the same events in any order give the same state
  (late and out-of-order events land in their own day);
* **idempotent** — an event whose id was already counted in its day is ignored, so a
  replay never double counts;
* **bounded** — tiles older than ``retention_days`` before the customer's newest event are
  dropped, and older events are not counted into tiles; they still update the scalars
  (first seen, last activity or purchase, plan level), which keeps the state order-free
  at the retention edge too.

**The dedup window.** The hashes of activity events are kept only for the days within
``dedup_days`` of the customer's newest activity event (``CHURN_DEDUP_DAYS``); older tiles
are **sealed**: their counters stay (until the retention drops them), their activity
hashes go. An activity event of a sealed day could be a duplicate that can no longer be
recognised, so it is refused whole: *too late* (:meth:`CustomerAggregates.is_too_late`),
neither counted nor moving the scalars. Transactions are few, so their hashes are kept
for the whole retention and a transaction is never too late. The window is measured
against the newest event *of the same topic* because each topic partition is read in
order while the two topics may be read at different paces (a backfill can read
transactions weeks ahead of activity). So events arriving in any order give the same
state as long as no activity event arrives more than ``dedup_days`` behind its
customer's newest activity event, and a replay of events already applied changes
nothing, whatever their age.

Money is kept in minor units (cents) and durations in whole seconds, so sums are exact
integers whatever the order. The worker, the API and the offline dataset builder all
build state with :meth:`CustomerAggregates.apply`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from hashlib import blake2b as _blake2b
from typing import cast

import numpy as np

from core.counters import (
    ACTIVITY_COUNTERS,
    COUNT,
    COUNTERS,
    DAY_SECONDS,
    HASH_BITS,
    LEVEL_EVENTS,
    N_COUNTERS,
    NEVER,
    NO_DAY,
    C,
    day_of_event,
    epoch_seconds,
    event_hash,
    has_transactions,
    level_set_by,
    narrow_hash,
    to_cents,
)
from core.events import Event

# The tile format lives in core.counters; these names are also read from here.
__all__ = [
    "ACTIVITY_COUNTERS",
    "COUNTERS",
    "DAY_SECONDS",
    "HASH_BITS",
    "HASH_PAGE",
    "NEVER",
    "NO_DAY",
    "N_COUNTERS",
    "C",
    "CustomerAggregates",
    "day_of_event",
    "epoch_seconds",
    "event_hash",
    "has_transactions",
    "narrow_hash",
    "to_cents",
]

HASH_PAGE = 16
"""Activity hashes per stored page: the tile of a customer's newest activity day stores
its hashes in full pages of this many (written once each) and a tail (rewritten with the
tile), so writing a busy day's tile again costs its new hashes, not all of them. Once a
newer day has activity, the day's tile is written once more with all its hashes and its
pages are deleted (a field per page costs memory) (:mod:`core.customer_encoding`)."""
_PAGE_BYTES = 4 * HASH_PAGE  # a page of little-endian uint32 hashes
_NO_HASHES: frozenset[int] = frozenset()  # the event hashes of a tile loaded for reading only
_NO_DAYS = np.zeros(0, dtype=np.int64)  # a new state's (shared, read-only) empty arrays
_NO_COUNTS = np.zeros((0, N_COUNTERS), dtype=np.int64)
_NO_DAYS.flags.writeable = False
_NO_COUNTS.flags.writeable = False


class CustomerAggregates:
    """Everything the store keeps about one customer. Times are epoch seconds (UTC).

    Tiles are rows of an int64 array (``counts``), one per day (``days``), in no
    particular order; ``event_hashes[row]`` holds the hashes of the activity events
    counted in row (of all its events for a tile stored by an older release) and
    ``transaction_hashes[row]`` those of its transactions (None: none). Tiles of days up
    to ``sealed_through`` are sealed (no activity hashes; see the module docstring).
    ``changed_days`` (unsealed tiles), ``dropped_days`` (unsealed tiles gone: dropped or
    sealed) and ``sealed_changed`` (the sealed tiles as a whole) record what changed since
    the store last wrote this customer (the store clears them with :meth:`mark_written`).
    ``hash_pages[row]`` counts the full pages of row's activity hashes the store holds
    (:data:`HASH_PAGE`), and ``dropped_pages`` the pages of each dropped or sealed day.
    """

    __slots__ = (
        "_capacity",
        "_row_of_day",
        "changed_days",
        "counts",
        "customer_id",
        "days",
        "dropped_days",
        "dropped_pages",
        "event_hashes",
        "first_seen",
        "hash_pages",
        "last_activity",
        "last_event",
        "last_purchase",
        "level",
        "level_key",
        "n_rows",
        "packed_hashes",
        "sealed_changed",
        "sealed_through",
        "transaction_hashes",
    )

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.n_rows = 0
        self._capacity = 0  # rows allocated: none until the first tile (see _add_row)
        self.days = _NO_DAYS
        self.counts = _NO_COUNTS
        self.event_hashes: list[set[int]] = []
        # event_hashes[row] as stored (little-endian uint32s, in the order counted), kept
        # up to date as events are counted once built (None: not built yet; see
        # changed_tiles), so writing a tile does not pack all its hashes again.
        self.packed_hashes: list[bytearray | None] = []
        self.hash_pages: list[int] = []
        self.transaction_hashes: list[set[int] | None] = []
        self._row_of_day: dict[int, int] = {}
        self.first_seen = NEVER
        self.last_event = NEVER
        self.last_activity = NEVER
        self.last_purchase = NEVER
        self.level = "free"
        self.level_key: tuple[int, str] = (NEVER, "")  # (time, event id) that set level
        self.changed_days: set[int] = set()
        self.dropped_days: set[int] = set()
        self.dropped_pages: dict[int, int] = {}
        self.sealed_through = NO_DAY
        self.sealed_changed = False

    def apply(self, event: Event, retention_days: int = 120, dedup_days: int | None = None) -> bool:
        """Count ``event``; return False when it was already counted, is too old or too
        late. ``dedup_days`` is the dedup window (None: as long as ``retention_days``).

        A too-old event (beyond ``retention_days``) is not counted, but its time still
        updates the scalars (a min, maxima and a latest-by-(time, id), so this is
        idempotent): an event that arrived before the newer ones would have set them too,
        and its tile would have been dropped since. A too-late one (beyond the dedup
        window, see :meth:`is_too_late`) changes nothing.

        >>> from datetime import UTC, datetime
        >>> from core.events import Play, PlayPayload
        >>> agg = CustomerAggregates("c1")
        >>> play = Play(event_id="e1", customer_id="c1",
        ...             event_time=datetime(2026, 1, 5, 10, tzinfo=UTC),
        ...             payload=PlayPayload(duration_s=180.4))
        >>> agg.apply(play), agg.apply(play)
        (True, False)
        >>> agg.tile(day_of_event(play))["play"], agg.tile(day_of_event(play))["play_seconds"]
        (1, 180)
        """
        # Cost: one BLAKE2b of the id, a few dict/set operations and 1-5 counter
        # increments (2-D indexing: no per-event row view): about 2-4 µs per event; a new
        # day adds a row (_add_row).
        at = int(event.event_time.timestamp() // 1)
        day = at // DAY_SECONDS
        last_event = self.last_event
        if last_event != NEVER and day <= last_event // DAY_SECONDS - retention_days:
            self._update_scalars(event, at)  # older than any tile kept: scalars only
            return False
        activity = event.topic_kind == "activity"
        last_activity = self.last_activity
        sealed_through = self.sealed_through
        if activity and (
            day <= sealed_through
            or (
                dedup_days is not None
                and last_activity != NEVER
                and day <= last_activity // DAY_SECONDS - dedup_days
            )
        ):
            return False  # too late: a duplicate could not be recognised
        row = self._row_of_day.get(day)
        if row is None:
            row = self._add_row(day)
        packed_digest = _blake2b(event.event_id.encode(), digest_size=8).digest()[:4]
        digest = int.from_bytes(packed_digest, "little")
        if activity:
            seen = self.event_hashes[row]
            if digest in seen:
                return False
            seen.add(digest)
            packed = self.packed_hashes[row]
            if packed is not None:
                packed += packed_digest
        else:
            found = self.transaction_hashes[row]
            if found is None:
                self.transaction_hashes[row] = {digest}
            elif digest in found:
                return False
            else:
                found.add(digest)
        COUNT[event.type](self.counts, row, event)
        if day <= sealed_through:
            self.sealed_changed = True  # a transaction of a sealed day
        else:
            self.changed_days.add(day)
        self._update_scalars(event, at)
        if at > last_event:
            newest_day_before = last_event // DAY_SECONDS if last_event != NEVER else day
            self.last_event = at
            if day > newest_day_before:
                self._drop_tiles_up_to(day - retention_days)
        if activity and last_activity != NEVER and day > last_activity // DAY_SECONDS:
            # the newest activity day moves on: its hash pages go into its tile
            newest_row = self._row_of_day.get(last_activity // DAY_SECONDS)
            if newest_row is not None and self.hash_pages[newest_row]:
                self.changed_days.add(last_activity // DAY_SECONDS)
        if (
            activity
            and dedup_days is not None
            and dedup_days < retention_days
            and (last_activity == NEVER or day > last_activity // DAY_SECONDS)
        ):
            self._seal_up_to(day - dedup_days)
        return True

    def is_too_late(self, event: Event, dedup_days: int | None) -> bool:
        """Whether :meth:`apply` refuses ``event`` as too late: an activity event of a
        sealed day or more than ``dedup_days`` before the day of the customer's newest
        activity event. (An event beyond the retention is too old before it is too late:
        test that first.)"""
        if event.topic_kind != "activity":
            return False
        day = int(event.event_time.timestamp() // 1) // DAY_SECONDS
        return day <= self.sealed_through or (
            dedup_days is not None
            and self.last_activity != NEVER
            and day <= self.last_activity // DAY_SECONDS - dedup_days
        )

    def mark_written(self) -> None:
        """Forget the changes recorded since the last write (the store calls it)."""
        self.changed_days.clear()
        self.dropped_days.clear()
        self.dropped_pages.clear()
        self.sealed_changed = False

    def changed_tiles(
        self,
    ) -> Iterator[tuple[int, np.ndarray, bytearray, set[int] | None, int | None]]:
        """(day, counters, activity hashes packed as stored — little-endian uint32s —,
        transaction hashes, pages stored) of every unsealed tile changed since the last
        write. For the newest activity day the store writes the full pages
        (:data:`HASH_PAGE` hashes each) from ``pages stored`` on, and the rest with the
        tile; once yielded, every full page counts as stored (:attr:`hash_pages`). Other
        days have ``pages stored`` None: all their hashes go in the tile, and pages
        stored before are recorded in :attr:`dropped_pages` (to delete).

        Cost: a tile's hashes are packed once, the first time it is written (or when
        loaded); after that :meth:`apply` appends each new one, so writing a busy day's
        tile again and again neither repacks nor rewrites all its hashes."""
        packed_hashes = self.packed_hashes
        hash_pages = self.hash_pages
        newest = self.last_activity // DAY_SECONDS if self.last_activity != NEVER else NO_DAY
        for day in self.changed_days:
            row = self._row_of_day[day]
            packed = packed_hashes[row]
            if packed is None:
                packed = bytearray(np.fromiter(self.event_hashes[row], dtype="<u4").tobytes())
                packed_hashes[row] = packed
            if day == newest:
                stored = hash_pages[row]
                yield day, self.counts[row], packed, self.transaction_hashes[row], stored
                hash_pages[row] = len(packed) // _PAGE_BYTES
            else:
                self._drop_pages(day, row)
                yield day, self.counts[row], packed, self.transaction_hashes[row], None

    def sealed_tiles(self) -> tuple[np.ndarray, np.ndarray, list[set[int] | None]]:
        """The sealed tiles: their days, their counters (one row per day) and their
        transaction hashes."""
        days = self.days[: self.n_rows]
        rows = np.flatnonzero(days <= self.sealed_through)
        return days[rows], self.counts[rows], [self.transaction_hashes[r] for r in rows.tolist()]

    def tile(self, day: int) -> dict[str, int]:
        """The counters of one day by name (all zero for a day without events)."""
        row = self._row_of_day.get(day)
        values = self.counts[row].tolist() if row is not None else [0] * N_COUNTERS
        return dict(zip(COUNTERS, values, strict=True))

    def snapshot(self) -> dict[str, object]:
        """Everything that defines this state, in a form that compares with ``==``
        (tiles by day, event hashes by day, scalars): two states with equal snapshots give
        equal features at every time."""
        days = self.tile_days().tolist()
        return {
            "tiles": {d: tuple(self.counts[r].tolist()) for r, d in enumerate(days)},
            "hashes": {
                d: frozenset(self.event_hashes[r]).union(self.transaction_hashes[r] or ())
                for r, d in enumerate(days)
            },
            "first_seen": self.first_seen,
            "last_event": self.last_event,
            "last_activity": self.last_activity,
            "last_purchase": self.last_purchase,
            "level": self.level,
            "level_key": self.level_key,
        }

    def tile_days(self) -> np.ndarray:
        """Days (since the epoch) that have a tile; parallel to :meth:`tile_counts`."""
        return self.days[: self.n_rows]

    def tile_counts(self) -> np.ndarray:
        """The tiles' counters, one row per day of :meth:`tile_days`."""
        return self.counts[: self.n_rows]

    def set_tile(self, day: int, counts: Sequence[int], hashes: Iterable[int]) -> None:
        """Load one stored tile (used when reading state back from the store)."""
        row = self._row_of_day.get(day)
        if row is None:
            row = self._add_row(day)
        values = list(counts)[:N_COUNTERS]
        self.counts[row, : len(values)] = values
        self.event_hashes[row] = set(hashes)
        self.packed_hashes[row] = None
        self.hash_pages[row] = 0
        self.transaction_hashes[row] = set(hashes) if has_transactions(values) else None

    def load_tiles(
        self,
        days: np.ndarray,
        counts: np.ndarray,
        hashes: Sequence[Iterable[int]] | None,
        sealed_through: int = NO_DAY,
        transaction_hashes: Sequence[Iterable[int] | None] | None = None,
        packed: Sequence[bytes | None] | None = None,
        pages: Sequence[int] | None = None,
    ) -> None:
        """Load stored tiles in bulk into an empty state. ``days`` and ``counts`` (shape
        (days, N_COUNTERS)) are used as they are, not copied: the first new day
        reallocates them (see :meth:`_add_row`). ``hashes`` are the tiles' activity hashes
        (those of days up to ``sealed_through``, the sealed tiles, are empty) and
        ``transaction_hashes`` their transactions' (default: none). ``packed`` gives each
        tile's activity hashes as stored, in their stored order (None: not known), of
        which ``pages`` full pages are stored as pages (default: none).

        ``hashes=None`` loads a state for reading features only: applying an event to it
        raises (its tiles' event-hash sets are immutable and empty)."""
        if self.n_rows:
            raise ValueError("load_tiles needs an empty state")
        n = len(days)
        if counts.shape != (n, N_COUNTERS):
            raise ValueError(f"counts of shape {counts.shape} for {n} days")
        self._capacity = n
        self.days, self.counts = days, counts
        if hashes is None:
            self.event_hashes = cast(list[set[int]], [_NO_HASHES] * n)
            self.packed_hashes = [None] * n
            self.hash_pages = [0] * n
            self.transaction_hashes = cast(list[set[int] | None], [_NO_HASHES] * n)
        else:
            self.event_hashes = [set(h) for h in hashes]
            self.packed_hashes = [None if p is None else bytearray(p) for p in packed or [None] * n]
            self.hash_pages = list(pages) if pages is not None else [0] * n
            self.transaction_hashes = (
                [None if h is None else set(h) for h in transaction_hashes]
                if transaction_hashes is not None
                else [None] * n
            )
        self._row_of_day = {day: row for row, day in enumerate(days.tolist())}
        self.n_rows = n
        self.sealed_through = sealed_through

    def _add_row(self, day: int) -> int:
        row = self.n_rows
        if row == self._capacity:  # grow: new rows are zero
            self._capacity = max(2 * self._capacity, 8)
            days = np.zeros(self._capacity, dtype=np.int64)
            days[:row] = self.days[:row]
            grown = np.zeros((self._capacity, N_COUNTERS), dtype=np.int64)
            grown[:row] = self.counts[:row]
            self.days, self.counts = days, grown
        # (a row freed by _drop_tiles_up_to was zeroed there)
        self.n_rows += 1
        self.days[row] = day
        self.event_hashes.append(set())
        self.packed_hashes.append(bytearray())
        self.hash_pages.append(0)
        self.transaction_hashes.append(None)
        self._row_of_day[day] = row
        return row

    def _update_scalars(self, event: Event, at: int) -> None:
        if self.first_seen == NEVER or at < self.first_seen:
            self.first_seen = at
        if event.topic_kind == "activity":
            if at > self.last_activity:
                self.last_activity = at
            if event.type in LEVEL_EVENTS:
                self._update_level(event, at)
        elif event.type == "purchase" and at > self.last_purchase:
            self.last_purchase = at

    def _update_level(self, event: Event, at: int) -> None:
        level = level_set_by(event)
        if level is not None and (at, event.event_id) > self.level_key:
            self.level = level
            self.level_key = (at, event.event_id)

    def _drop_tiles_up_to(self, oldest_dropped: int) -> None:
        # Runs whenever a customer's newest day moves on: the common case (nothing to
        # drop) is answered from the day index, without numpy's per-call overhead.
        row_of_day = self._row_of_day
        if not row_of_day or min(row_of_day) > oldest_dropped:
            return
        days = self.days[: self.n_rows]
        keep = days > oldest_dropped
        for day in days[~keep].tolist():
            if day <= self.sealed_through:
                self.sealed_changed = True
            else:
                self.dropped_days.add(day)
                self.changed_days.discard(day)
                self._drop_pages(day, row_of_day[day])
        kept_rows = np.flatnonzero(keep)
        n_kept = len(kept_rows)
        self.days[:n_kept] = days[kept_rows]
        self.counts[:n_kept] = self.counts[kept_rows]
        self.counts[n_kept : self.n_rows] = 0  # free rows are zero (see _add_row)
        kept = kept_rows.tolist()
        self.event_hashes = [self.event_hashes[row] for row in kept]
        self.packed_hashes = [self.packed_hashes[row] for row in kept]
        self.hash_pages = [self.hash_pages[row] for row in kept]
        self.transaction_hashes = [self.transaction_hashes[row] for row in kept]
        self.n_rows = n_kept
        self._row_of_day = {int(d): r for r, d in enumerate(self.days[:n_kept].tolist())}

    def _drop_pages(self, day: int, row: int) -> None:
        """Record that ``day``'s stored hash pages go (its tile is dropped or sealed)."""
        if self.hash_pages[row]:
            self.dropped_pages[day] = self.hash_pages[row]
            self.hash_pages[row] = 0

    def _seal_up_to(self, last_sealed: int) -> None:
        """Seal the tiles of days up to ``last_sealed``: drop their activity hashes, move
        them from their own fields to the sealed field (at the next write)."""
        sealed_through = self.sealed_through
        if last_sealed <= sealed_through:
            return
        # A plain loop: a customer has a few dozen tiles at most, where numpy's per-call
        # overhead would cost more (this runs once per customer and new activity day).
        self.sealed_through = last_sealed
        row_of_day = self._row_of_day
        if not row_of_day or min(row_of_day) > last_sealed:
            return  # no tile to seal (the common case)
        for day, row in row_of_day.items():
            if sealed_through < day <= last_sealed:
                self.event_hashes[row] = cast(set[int], _NO_HASHES)
                self.packed_hashes[row] = None
                self._drop_pages(day, row)
                self.dropped_days.add(day)
                self.changed_days.discard(day)
                self.sealed_changed = True
