"""How one customer is stored in their Redis hash (key and field names in :mod:`core.keys`).

Fields of a customer's hash:

* ``d:<day>`` — a day tile inside the customer's dedup window (``CHURN_DEDUP_DAYS``, see
  :mod:`core.aggregates`): msgpack ``[counters (trailing zeros trimmed), activity hashes,
  4, transaction hashes]``, hashes packed as little-endian uint32 (4 is their width in
  bytes); without transactions the last item is left out. Tiles written by older
  releases hold the hashes of all their events in the second item, 8 bytes wide in
  two-item tiles (read as their low 32 bits: see :func:`core.aggregates.event_hash`).
* ``h:<day>:<page>`` — pages 0, 1, ... of the activity hashes of the customer's newest
  activity day: the first :data:`~core.aggregates.HASH_PAGE` hashes counted that day,
  then the next ones, and so on (packed as in the tile); the tile's second item holds
  those after its last full page. A page is written once, when it fills, so a busy
  day's tile, written again with every batch, costs its new hashes and not all of them
  (in Redis's append-only file too). When a newer day gets activity, the day's tile is
  written once more with all its hashes and its pages are deleted.
* ``s`` — the **sealed** tiles: days older than the dedup window, without activity hashes
  (no activity event is counted into them any more), all in one field: msgpack
  ``[first day, day - first day, counters, transaction hashes or nil, ...]`` (a triple
  per day, days ascending, counters trimmed as above). It is rewritten when a day leaves
  the window or the retention, and when a late transaction lands in a sealed day.
* ``m`` — the scalars: msgpack ``[first_seen, last_event, last_activity, last_purchase,
  level, [level time, level event id]]``.
* ``r`` — the latest score: msgpack ``[score, band, model_version, scored_at,
  last_event_time, value or nil]`` (:func:`encode_score`). One field rather than six: a
  customer's score is rewritten on every batch that touches them, and each field costs
  its name and framing in Redis's memory and again in its append-only file on every
  write (~75 bytes per write against ~210 for six text fields).

A store written before sealed tiles existed holds every tile as ``d:<day>``: it reads as
it is, and the tiles older than the window are sealed (their ``d:`` fields replaced by
``s``) when the customer next gets events of a new day.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from core.aggregates import HASH_PAGE, N_COUNTERS, NO_DAY, CustomerAggregates, has_transactions
from core.counters import TRANSACTION_COUNTERS
from core.keys import HASH_PAGE_PREFIX, SCALARS_FIELD, SCORE_FIELD, SEALED_FIELD, TILE_PREFIX
from core.scores import Score

_MSGPACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder()
_TILE_PREFIX_BYTES = TILE_PREFIX.encode()
_TILE_PREFIX_LENGTH = len(_TILE_PREFIX_BYTES)
_SCALARS_FIELD_BYTES = SCALARS_FIELD.encode()
_SEALED_FIELD_BYTES = SEALED_FIELD.encode()
_TILE_DAYS: dict[bytes, int] = {}  # field name -> its day, -1 for other fields (a cache)
_HASH_WIDTH = 4  # bytes per stored event hash (HASH_BITS / 8)
_PAGE_BYTES = _HASH_WIDTH * HASH_PAGE
_PAGE_PREFIX_BYTES = HASH_PAGE_PREFIX.encode()
# Counters from here on are the transactions' (purchase, revenue, ..., refund, ...).
_FIRST_TRANSACTION_COUNTER = min(TRANSACTION_COUNTERS)
_NOTHING: tuple[int, ...] = ()


@dataclass
class StoredCustomer:
    """A customer read back from the store: aggregates plus the latest score (if any)."""

    aggregates: CustomerAggregates
    score: Score | None


def _tile_day(name: bytes) -> int:
    """The day of a tile's field name (-1 for other fields), remembered for next time:
    the names a store holds are few (one per day of history, plus the others)."""
    day = int(name[_TILE_PREFIX_LENGTH:]) if name.startswith(_TILE_PREFIX_BYTES) else -1
    if len(_TILE_DAYS) < 100_000:
        _TILE_DAYS[name] = day
    return day


def _trimmed(counts: np.ndarray) -> list[int]:
    """The counters without trailing zeros (tiles of activity alone end before the
    transaction counters: those are cut in one slice, not zero by zero)."""
    values: list[int] = counts.tolist()
    end = len(values)
    if not any(values[_FIRST_TRANSACTION_COUNTER:]):
        end = _FIRST_TRANSACTION_COUNTER
    while end and not values[end - 1]:
        end -= 1
    del values[end:]
    return values


def _packed(hashes: Iterable[int] | bytes | bytearray) -> bytes | bytearray:
    if isinstance(hashes, bytes | bytearray):
        return hashes  # packed already
    return np.fromiter(hashes, dtype="<u4").tobytes()


def encode_tile(
    counts: np.ndarray,
    hashes: Iterable[int] | bytes | bytearray,
    transactions: Iterable[int] | None = None,
) -> bytes:
    """One ``d:<day>`` tile's stored value: ``[counters, activity hashes, 4(, transaction
    hashes)]`` (module docstring). ``hashes`` may be given packed already (little-endian
    uint32s, as :meth:`CustomerAggregates.changed_tiles` gives them)."""
    values = _trimmed(counts)
    if transactions:
        return _MSGPACK.encode([values, _packed(hashes), _HASH_WIDTH, _packed(transactions)])
    return _MSGPACK.encode([values, _packed(hashes), _HASH_WIDTH])


def tile_fields(
    day: int,
    counts: np.ndarray,
    packed: bytes | bytearray,
    transactions: Iterable[int] | None,
    pages_stored: int | None,
) -> list[tuple[str, bytes]]:
    """The fields to write for one changed tile (as
    :meth:`CustomerAggregates.changed_tiles` gives it): its hash pages from
    ``pages_stored`` on, then the tile itself, holding the hashes after its last full
    page; with ``pages_stored`` None, the tile alone, holding all its hashes.

    >>> counts = np.zeros(N_COUNTERS, dtype=np.int64)
    >>> packed = bytes(4 * (HASH_PAGE + 3))
    >>> [(name, len(value)) for name, value in tile_fields(7, counts, packed, None, 0)]
    [('h:7:0', 64), ('d:7', 17)]
    >>> [name for name, _ in tile_fields(7, counts, packed, None, 1)]
    ['d:7']
    >>> [(name, len(value)) for name, value in tile_fields(7, counts, packed, None, None)]
    [('d:7', 81)]
    """
    if pages_stored is None:
        return [(f"{TILE_PREFIX}{day}", encode_tile(counts, packed, transactions))]
    full = len(packed) // _PAGE_BYTES
    fields = [
        (
            f"{HASH_PAGE_PREFIX}{day}:{page}",
            bytes(packed[page * _PAGE_BYTES : (page + 1) * _PAGE_BYTES]),
        )
        for page in range(pages_stored, full)
    ]
    tail = packed[full * _PAGE_BYTES :] if full else packed
    fields.append((f"{TILE_PREFIX}{day}", encode_tile(counts, tail, transactions)))
    return fields


def changed_fields(agg: CustomerAggregates) -> tuple[list[tuple[str, bytes]], list[str]]:
    """What the store writes for ``agg``'s changes since its last write: the fields to set
    (scalars, changed tiles and their new hash pages, the sealed tiles when they
    changed) and the fields to delete (dropped or sealed tiles and their pages; the
    sealed field when no sealed tile is left). Records the pages as stored (see
    :meth:`CustomerAggregates.changed_tiles`); the caller clears the change tracking."""
    to_set = [(SCALARS_FIELD, encode_scalars(agg))]
    for day, counts, packed, transactions, pages in agg.changed_tiles():
        to_set += tile_fields(day, counts, packed, transactions, pages)
    to_delete: list[str] = []
    if agg.dropped_days or agg.dropped_pages or agg.sealed_changed:
        to_delete += (f"{TILE_PREFIX}{day}" for day in agg.dropped_days)
        for day, pages in agg.dropped_pages.items():
            to_delete += (f"{HASH_PAGE_PREFIX}{day}:{page}" for page in range(pages))
        if agg.sealed_changed:
            sealed = encode_sealed(*agg.sealed_tiles())
            if sealed is None:
                to_delete.append(SEALED_FIELD)
            else:
                to_set.append((SEALED_FIELD, sealed))
    return to_set, to_delete


def _hash_pages(fields: Mapping[bytes, bytes]) -> dict[int, list[bytes]]:
    """The hash pages among a customer's fields, by day, in page order."""
    found: dict[int, dict[int, bytes]] = {}
    for name, value in fields.items():
        if name.startswith(_PAGE_PREFIX_BYTES):
            day, page = name[len(_PAGE_PREFIX_BYTES) :].split(b":")
            found.setdefault(int(day), {})[int(page)] = value
    return {day: [pages[i] for i in sorted(pages)] for day, pages in found.items()}


def decode_hashes(tile: Sequence[Any]) -> list[int]:
    """The activity hashes of a decoded tile (``[counters, packed hashes(, width(,
    transaction hashes))]``) as 32-bit ints; a two-item tile holds 8-byte hashes, of
    which the low half is kept."""
    if len(tile) > 2 and tile[2] == _HASH_WIDTH:
        return np.frombuffer(tile[1], dtype="<u4").tolist()  # type: ignore[no-any-return]
    return np.frombuffer(tile[1], dtype="<u4")[::2].tolist()  # type: ignore[no-any-return]


def decode_transaction_hashes(tile: Sequence[Any], hashes: list[int]) -> list[int] | None:
    """The transaction hashes of a decoded tile whose activity hashes are ``hashes``
    (None: no transaction). A tile of an older release (two or three items) keeps the
    hashes of all its events together: when it counts transactions, all of them are
    kept as its transactions' hashes too."""
    if len(tile) > 3:
        return np.frombuffer(tile[3], dtype="<u4").tolist()  # type: ignore[no-any-return]
    return list(hashes) if has_transactions(tile[0]) else None


def encode_sealed(
    days: np.ndarray, counts: np.ndarray, transactions: Sequence[Iterable[int] | None] = ()
) -> bytes | None:
    """The ``s`` field's value for sealed tiles ``days`` (counters ``counts``, one row per
    day; ``transactions``: each day's transaction hashes, default none), or None when
    there are none (the field is then deleted).

    >>> days = np.array([20_003, 20_001])
    >>> counts = np.zeros((2, N_COUNTERS), dtype=np.int64)
    >>> counts[0, 3], counts[1, 0] = 7, 2
    >>> _UNPACK.decode(encode_sealed(days, counts, [None, {1}]))
    [20001, 0, [2], b'\\x01\\x00\\x00\\x00', 2, [0, 0, 0, 7], None]
    """
    if not len(days):
        return None
    order = np.argsort(days, kind="stable").tolist()
    first = int(days[order[0]])
    items: list[Any] = [first]
    for row in order:
        hashes = transactions[row] if row < len(transactions) else None
        items += (
            int(days[row]) - first,
            _trimmed(counts[row]),
            _packed(hashes) if hashes else None,
        )
    return _MSGPACK.encode(items)


def encode_scalars(agg: CustomerAggregates) -> bytes:
    """The ``m`` field's value."""
    return _MSGPACK.encode(
        [
            agg.first_seen,
            agg.last_event,
            agg.last_activity,
            agg.last_purchase,
            agg.level,
            list(agg.level_key),
        ]
    )


def decode_customer(
    customer_id: str, fields: Mapping[bytes, bytes], with_event_hashes: bool = True
) -> StoredCustomer:
    """Rebuild a customer from the fields of their hash (empty mapping: a new customer).

    Without event hashes (``with_event_hashes=False``) the result is for reading features
    only — much cheaper — and must never be written back.
    """
    return decode_customers([customer_id], [fields], with_event_hashes)[0]


def decode_customers(
    customer_ids: Sequence[str],
    hashes_fields: Sequence[Mapping[bytes, bytes]],
    with_event_hashes: bool = True,
) -> list[StoredCustomer]:
    """:func:`decode_customer` for many customers at once: their tiles (``d:<day>`` and
    sealed) are decoded by one msgpack call into one counter array (each customer's
    aggregates hold a slice of it). Costs about 1 µs per tile plus 3 µs per customer."""
    days: list[int] = []
    values: list[bytes] = []
    sizes: list[int] = []
    sealed: list[bytes] = []
    sealed_of: list[int] = []  # per customer: index in ``sealed``, -1 for none
    paged: dict[int, dict[int, list[bytes]]] = {}  # customer index -> day -> hash pages
    for i, fields in enumerate(hashes_fields):
        before = len(days)
        has_pages = False
        for name, value in fields.items():
            day = _TILE_DAYS.get(name)
            if day is None:
                day = _tile_day(name)
            if day >= 0:
                days.append(day)
                values.append(value)
            elif name.startswith(_PAGE_PREFIX_BYTES):
                has_pages = True
        if has_pages and with_event_hashes:
            paged[i] = _hash_pages(fields)
        sizes.append(len(days) - before)
        packed = fields.get(_SEALED_FIELD_BYTES)
        if packed is None:
            sealed_of.append(-1)
        else:
            sealed_of.append(len(sealed))
            sealed.append(packed)
    decoded: list[list[Any]] = _UNPACK.decode(_msgpack_array(values + sealed))
    tiles = decoded[: len(values)]  # [[counters, hashes(, width)], ...]
    # Every customer's rows, contiguous: their sealed tiles first, then their d: tiles.
    rows: list[Sequence[int]] = []
    row_days: list[int] = []
    spans: list[tuple[int, int, int, int]] = []  # first row, sealed rows, last one, index
    tile = 0
    for size, index in zip(sizes, sealed_of, strict=True):
        first = len(rows)
        n_sealed, last_sealed = 0, NO_DAY
        if index >= 0:
            packed_days = decoded[len(values) + index]
            base, offsets = packed_days[0], packed_days[1::3]
            row_days += [base + offset for offset in offsets]
            rows += packed_days[2::3]
            n_sealed = len(offsets)
            if offsets:
                last_sealed = base + max(offsets)
        rows += [t[0] for t in tiles[tile : tile + size]]
        row_days += days[tile : tile + size]
        spans.append((first, n_sealed, last_sealed, index))
        tile += size
    matrix = _counter_matrix(rows)
    day_array = np.array(row_days, dtype=np.int64)
    customers = []
    tile = 0
    for i, (customer_id, fields, size, (first, n_sealed, last_sealed, index)) in enumerate(
        zip(customer_ids, hashes_fields, sizes, spans, strict=True)
    ):
        if not fields:  # never seen: a new state (~0.5 µs instead of ~3.5 for the below)
            customers.append(StoredCustomer(CustomerAggregates(customer_id), None))
            continue
        agg = CustomerAggregates(customer_id)
        stop = first + n_sealed + size
        hashes: list[Sequence[int]] | None = None
        transactions: list[Sequence[int] | None] | None = None
        as_stored: list[bytes | None] | None = None
        page_counts: list[int] | None = None
        if with_event_hashes:
            hashes = [_NOTHING] * n_sealed
            transactions = []
            as_stored = [None] * n_sealed
            page_counts = [0] * n_sealed
            if n_sealed:
                transactions += [
                    None if p is None else np.frombuffer(p, dtype="<u4").tolist()
                    for p in decoded[len(values) + index][3::3]
                ]
            day_pages = paged.get(i, {})
            for day, t in zip(days[tile : tile + size], tiles[tile : tile + size], strict=True):
                stored, own = _stored_hashes(t, day_pages.get(day, ()))
                hashes.append(own)
                as_stored.append(stored)
                page_counts.append(len(day_pages.get(day, ())) if stored is not None else 0)
                transactions.append(decode_transaction_hashes(t, own))
        tile += size
        agg.load_tiles(
            day_array[first:stop],
            matrix[first:stop],
            hashes,
            last_sealed,
            transactions,
            as_stored,
            page_counts,
        )
        scalars = fields.get(_SCALARS_FIELD_BYTES)
        if scalars is not None:
            first_seen, last, activity, purchase, level, level_key = _UNPACK.decode(scalars)
            agg.first_seen, agg.last_event = first_seen, last
            agg.last_activity, agg.last_purchase = activity, purchase
            agg.level, agg.level_key = level, (level_key[0], level_key[1])
        customers.append(StoredCustomer(agg, _decode_score(customer_id, fields)))
    return customers


_SCORE = SCORE_FIELD.encode()
_SCORE_RECORD = msgspec.msgpack.Decoder(tuple[float, str, str, float, int, float | None])


def encode_score(score: Score) -> bytes:
    """The ``r`` field of ``score``'s customer (see the module docstring)."""
    return _MSGPACK.encode(
        (
            score.score,
            score.band,
            score.model_version,
            score.scored_at,
            score.last_event_time,
            score.value,
        )
    )


def decode_score(customer_id: str, data: bytes) -> Score:
    """The score an ``r`` field holds (see :func:`encode_score`).

    >>> s = Score("C1", 0.8125, "high", "v1", scored_at=1000.5, last_event_time=900)
    >>> decode_score("C1", encode_score(s)) == s
    True
    """
    score, band, version, scored_at, last_event_time, value = _SCORE_RECORD.decode(data)
    return Score(customer_id, score, band, version, scored_at, last_event_time, value)


def _decode_score(customer_id: str, fields: Mapping[bytes, bytes]) -> Score | None:
    data = fields.get(_SCORE)
    return None if data is None else decode_score(customer_id, data)


def _stored_hashes(tile: Sequence[Any], pages: Sequence[bytes]) -> tuple[bytes | None, list[int]]:
    """A tile's activity hashes packed as stored (its pages, then its own; None for a
    tile of an older release, whose hashes are packed otherwise) and as ints."""
    if len(tile) > 2 and tile[2] == _HASH_WIDTH:
        stored = b"".join(pages) + tile[1] if pages else tile[1]
        return stored, np.frombuffer(stored, dtype="<u4").tolist()
    return None, decode_hashes(tile)


def decode_for_reading(
    customer_ids: Sequence[str], hashes_fields: Sequence[Mapping[bytes, bytes]]
) -> list[StoredCustomer | None]:
    """:func:`decode_customers` without event hashes, None where a hash is empty."""
    decoded = iter(
        decode_customers(
            [c for c, fields in zip(customer_ids, hashes_fields, strict=True) if fields],
            [fields for fields in hashes_fields if fields],
            with_event_hashes=False,
        )
    )
    return [next(decoded) if fields else None for fields in hashes_fields]


def _msgpack_array(items: Sequence[bytes]) -> bytes:
    """A msgpack array (array 32 header) of already-encoded ``items``."""
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def _counter_matrix(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of counters as an array of shape (rows, N_COUNTERS): short rows (stored with
    trailing zeros trimmed) are padded with zeros; counters beyond N_COUNTERS (written by
    a version that counts more) are left out."""
    n = len(rows)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    total = int(widths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)
    starts = np.cumsum(widths) - widths
    row_of = np.repeat(np.arange(n), widths)
    column_of = np.arange(total) - np.repeat(starts, widths)
    known = column_of < N_COUNTERS
    matrix = np.zeros((n, N_COUNTERS), dtype=np.int64)
    matrix[row_of[known], column_of[known]] = flat[known]
    return matrix
