"""The stored layout of a customer (core.customer_encoding) and the dedup window
(CHURN_DEDUP_DAYS) of core.aggregates: sealed tiles round-trip, a store written before
sealed tiles existed still reads and deduplicates, and the window's edge is exact."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np

from core.aggregates import DAY_SECONDS, HASH_PAGE, N_COUNTERS, CustomerAggregates, event_hash
from core.customer_encoding import (
    changed_fields,
    decode_customer,
    decode_customers,
    encode_scalars,
    encode_sealed,
    encode_tile,
)
from core.events import (
    Event,
    ItemReactionPayload,
    Like,
    Play,
    PlayPayload,
    Purchase,
    PurchasePayload,
)
from core.keys import HASH_PAGE_PREFIX, SCALARS_FIELD, SEALED_FIELD, TILE_PREFIX

DEDUP = 28
RETENTION = 120
DAY0 = 20_500
_ENCODE = msgspec.msgpack.Encoder()


def at_day(day: int, hour: int = 12) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=hour)


def like(event_id: str, day: int, hour: int = 12) -> Like:
    return Like(
        event_id=event_id,
        customer_id="c1",
        event_time=at_day(day, hour),
        payload=ItemReactionPayload(),
    )


def purchase(event_id: str, day: int, hour: int = 12, amount: float = 9.99) -> Purchase:
    return Purchase(
        event_id=event_id,
        customer_id="c1",
        event_time=at_day(day, hour),
        payload=PurchasePayload(order_id=f"o-{event_id}", amount=amount, quantity=1),
    )


def history(days: int = 90, seed: int = 1) -> list[Event]:
    """A customer's events over ``days`` days (a few a day on most days, a purchase now
    and then), in time order."""
    rng = random.Random(seed)
    events: list[Event] = []
    for day in range(DAY0, DAY0 + days):
        for i in range(rng.choice([0, 0, 1, 3, 7])):
            event_id = f"e{day}-{i}"
            if rng.random() < 0.1:
                events.append(purchase(event_id, day, hour=i, amount=rng.uniform(1, 50)))
            elif rng.random() < 0.5:
                events.append(like(event_id, day, hour=i))
            else:
                events.append(
                    Play(
                        event_id=event_id,
                        customer_id="c1",
                        event_time=at_day(day, i),
                        payload=PlayPayload(duration_s=rng.uniform(1, 900)),
                    )
                )
    return events


def built(events: list[Event], dedup: int | None = DEDUP) -> CustomerAggregates:
    agg = CustomerAggregates("c1")
    for event in events:
        agg.apply(event, RETENTION, dedup)
    return agg


def stored_fields(agg: CustomerAggregates) -> dict[bytes, bytes]:
    """What the store holds for ``agg`` once every tile is written (as the commit does)."""
    fields = {SCALARS_FIELD.encode(): encode_scalars(agg)}
    sealed = encode_sealed(*agg.sealed_tiles())
    if sealed is not None:
        fields[SEALED_FIELD.encode()] = sealed
    for row, day in enumerate(agg.tile_days().tolist()):
        if day > agg.sealed_through:
            fields[f"{TILE_PREFIX}{day}".encode()] = encode_tile(
                agg.tile_counts()[row], agg.event_hashes[row], agg.transaction_hashes[row]
            )
    return fields


def newest_activity_day(agg: CustomerAggregates) -> int:
    return agg.last_activity // DAY_SECONDS


def test_a_customer_round_trips_with_sealed_and_open_tiles() -> None:
    agg = built(history())
    newest_day = newest_activity_day(agg)
    assert agg.sealed_through == newest_day - DEDUP
    fields = stored_fields(agg)
    tile_days = [int(name[2:]) for name in fields if name.startswith(TILE_PREFIX.encode())]
    assert tile_days and min(tile_days) > newest_day - DEDUP
    assert SEALED_FIELD.encode() in fields
    back = decode_customer("c1", fields).aggregates
    assert back.snapshot() == agg.snapshot()
    assert back.sealed_through <= agg.sealed_through  # the last sealed day with events
    sealed_days = back.sealed_tiles()[0].tolist()
    assert set(sealed_days) == {d for d in agg.tile_days().tolist() if d <= newest_day - DEDUP}
    hashes = back.snapshot()["hashes"]
    assert isinstance(hashes, dict)
    # sealed days keep their transactions' hashes, and only those
    for day in sealed_days:
        assert hashes[day] == frozenset(
            event_hash(e.event_id)
            for e in history()
            if e.type == "purchase" and e.event_time.timestamp() // DAY_SECONDS == day
        )
    assert any(hashes[day] for day in sealed_days)
    reading = decode_customers(["c1"], [fields], with_event_hashes=False)[0].aggregates
    assert reading.snapshot()["tiles"] == agg.snapshot()["tiles"]


def test_the_sealed_field_keeps_every_counter_and_transaction_of_every_day() -> None:
    rng = np.random.default_rng(4)
    days = rng.choice(np.arange(DAY0, DAY0 + 90), size=30, replace=False)
    counts = rng.integers(0, 70_000, size=(30, N_COUNTERS))
    counts[:, -3:] = 0  # trailing zeros are trimmed on write
    transactions = [{int(h) for h in rng.integers(0, 2**32, size=i % 3)} or None for i in range(30)]
    value = encode_sealed(days, counts, transactions)
    assert value is not None
    assert encode_sealed(days[:0], counts[:0]) is None
    back = decode_customer("c1", {SEALED_FIELD.encode(): value}).aggregates
    assert back.snapshot()["tiles"] == {
        int(d): tuple(row) for d, row in zip(days.tolist(), counts.tolist(), strict=True)
    }
    assert back.snapshot()["hashes"] == {
        int(d): frozenset(t or ()) for d, t in zip(days.tolist(), transactions, strict=True)
    }
    assert back.sealed_through == int(days.max())


def test_an_activity_event_just_inside_the_window_counts_and_one_just_outside_is_refused() -> None:
    agg = built(history())
    newest_day = newest_activity_day(agg)
    before = agg.snapshot()

    outside = like("late-out", newest_day - DEDUP)
    assert agg.is_too_late(outside, DEDUP)
    assert not agg.apply(outside, RETENTION, DEDUP)
    assert agg.snapshot() == before  # neither counted nor moving a scalar

    inside = like("late-in", newest_day - DEDUP + 1)
    likes = agg.tile(newest_day - DEDUP + 1)["like"]
    assert not agg.is_too_late(inside, DEDUP)
    assert agg.apply(inside, RETENTION, DEDUP)
    assert agg.tile(newest_day - DEDUP + 1)["like"] == likes + 1
    assert not agg.apply(inside, RETENTION, DEDUP)  # and it is recognised again


def test_a_transaction_is_never_too_late_and_still_recognised_on_a_sealed_day() -> None:
    agg = built(history())
    agg.mark_written()
    sealed_day = agg.sealed_through - 10
    late = purchase("late-purchase", sealed_day, amount=12.5)
    assert not agg.is_too_late(late, DEDUP)
    before = agg.tile(sealed_day)
    assert agg.apply(late, RETENTION, DEDUP)
    assert agg.tile(sealed_day)["purchase"] == before["purchase"] + 1
    assert agg.tile(sealed_day)["revenue_cents"] == before["revenue_cents"] + 1250
    assert agg.sealed_changed and not agg.changed_days  # it lives in the sealed field
    assert not agg.apply(late, RETENTION, DEDUP)
    back = decode_customer("c1", stored_fields(agg)).aggregates
    assert back.snapshot() == agg.snapshot()
    assert not back.apply(late, RETENTION, DEDUP)  # recognised after a reload too


def test_a_replay_of_applied_events_changes_nothing_whatever_their_age() -> None:
    events = history()
    agg = built(events)
    agg.mark_written()
    before = agg.snapshot()
    stored = decode_customer("c1", stored_fields(agg)).aggregates
    for state in (agg, stored):  # the worker's memory, and a worker that reloaded it
        assert not any(state.apply(e, RETENTION, DEDUP) for e in events)
        assert state.snapshot() == before
        assert not state.changed_days and not state.dropped_days and not state.sealed_changed


def test_events_in_any_order_within_the_window_give_the_same_state() -> None:
    events = history(seed=3)
    rng = random.Random(5)
    # each event arrives up to DEDUP - 1 days late: never DEDUP days behind the newest
    late = sorted(events, key=lambda e: e.event_time + timedelta(days=rng.uniform(0, DEDUP - 1)))
    assert late != events
    assert built(late).snapshot() == built(events).snapshot()


def test_transactions_read_weeks_ahead_of_activity_give_the_same_state() -> None:
    """A backfill may read the transactions topic far ahead of the activity topic (each
    topic partition is read in order, the two at their own pace): the window counts
    from the newest event of the same topic, so nothing is refused."""
    events = history(seed=4)
    transactions = [e for e in events if e.topic_kind == "transactions"]
    activity = [e for e in events if e.topic_kind == "activity"]
    assert transactions and activity
    agg = built(transactions + activity)
    assert agg.snapshot() == built(events).snapshot()


def test_a_store_written_before_sealed_tiles_reads_and_is_sealed_on_the_next_new_day() -> None:
    """Every day a ``d:<day>`` field with the hashes of all its events (8-byte hashes in
    two-item tiles, 4-byte ones in three-item tiles), no ``s``: it reads as it is,
    recognises its events, and its days beyond the window move to ``s`` when the
    customer next gets an activity event of a new day, keeping their transactions."""
    events = history()
    full = built(events, dedup=None)  # every tile with its hashes, as older releases kept
    fields = {SCALARS_FIELD.encode(): encode_scalars(full)}
    for row, day in enumerate(full.tile_days().tolist()):
        counts = full.tile_counts()[row]
        ids = [e.event_id for e in events if e.event_time.timestamp() // DAY_SECONDS == day]
        if day % 2:
            wide = [
                int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little")
                for i in ids
            ]
            value = _ENCODE.encode([counts.tolist(), np.array(wide, dtype="<u8").tobytes()])
        else:
            packed = np.array([event_hash(i) for i in ids], dtype="<u4").tobytes()
            value = _ENCODE.encode([counts.tolist(), packed, 4])
        fields[f"{TILE_PREFIX}{day}".encode()] = value
    old = decode_customer("c1", fields).aggregates
    assert old.snapshot() == full.snapshot()
    assert not any(old.apply(e, RETENTION, DEDUP) for e in events)  # replays recognised

    newest_day = newest_activity_day(old)
    assert old.apply(like("next-day", newest_day + 1), RETENTION, DEDUP)
    assert old.sealed_changed
    assert {d for d in full.tile_days().tolist() if d <= newest_day + 1 - DEDUP} == old.dropped_days
    rewritten = dict(fields)
    for day in old.dropped_days:
        del rewritten[f"{TILE_PREFIX}{day}".encode()]
    sealed = encode_sealed(*old.sealed_tiles())
    assert sealed is not None
    rewritten[SEALED_FIELD.encode()] = sealed
    for day, counts, hashes, transactions, _ in old.changed_tiles():
        rewritten[f"{TILE_PREFIX}{day}".encode()] = encode_tile(counts, hashes, transactions)
    rewritten[SCALARS_FIELD.encode()] = encode_scalars(old)
    again = decode_customer("c1", rewritten).aggregates
    assert again.snapshot() == old.snapshot()
    # a replayed purchase of a sealed day is still recognised
    sealed_days = set(again.sealed_tiles()[0].tolist())
    old_purchases = [
        e
        for e in events
        if e.type == "purchase" and e.event_time.timestamp() // DAY_SECONDS in sealed_days
    ]
    assert old_purchases
    assert not any(again.apply(e, RETENTION, DEDUP) for e in old_purchases)
    assert not any(again.apply(e, RETENTION, DEDUP) for e in events)
    assert again.snapshot() == old.snapshot()


def test_retention_drops_sealed_tiles_from_the_sealed_field() -> None:
    agg = built(history(days=60))
    agg.mark_written()
    oldest = int(agg.tile_days().min())
    jump = oldest + RETENTION  # drops the oldest day, seals everything up to jump - DEDUP
    assert oldest <= agg.sealed_through
    assert agg.apply(like("much-later", jump), RETENTION, DEDUP)
    assert oldest not in agg.sealed_tiles()[0].tolist()
    assert agg.sealed_changed
    assert oldest not in agg.dropped_days  # it lived in the sealed field, not in a d: field
    hashes = agg.snapshot()["hashes"]
    assert isinstance(hashes, dict) and event_hash("much-later") in hashes[jump]
    assert agg.tile(jump)["like"] == 1


def packed_as_set(packed: bytes | bytearray) -> list[int]:
    return sorted(np.frombuffer(bytes(packed), dtype="<u4").tolist())


def test_a_written_tile_holds_exactly_its_hashes_across_writes_drops_seals_and_reloads() -> None:
    """Each write packs what the tile's hash set holds, once each: the packed hashes kept
    between writes follow every event counted, and are rebuilt after a reload, a drop or a
    seal (retention 30 days, dedup window 7, 60 days of events written every few)."""
    events = history(days=60, seed=4)
    agg = CustomerAggregates("c1")
    writes = 0
    for i, event in enumerate(events):
        agg.apply(event, 30, 7)
        agg.apply(event, 30, 7)  # a duplicate adds nothing
        if i % 5 == 4:
            for day, counts, packed, transactions, _ in agg.changed_tiles():
                row = agg.tile_days().tolist().index(day)
                assert packed_as_set(packed) == sorted(agg.event_hashes[row])
                stored = decode_customers(
                    ["c1"], [{f"d:{day}".encode(): encode_tile(counts, packed, transactions)}]
                )[0].aggregates
                assert stored.snapshot()["hashes"] == {
                    day: frozenset(agg.event_hashes[row]).union(transactions or ())
                }
                writes += 1
            agg.mark_written()
        if i % 40 == 39:  # a restart: the state is read back from what the store holds
            agg = decode_customer("c1", stored_fields(agg)).aggregates
    assert writes > 20 and agg.sealed_through > DAY0
    for day, _, packed, _, _ in agg.changed_tiles():
        row = agg.tile_days().tolist().index(day)
        assert packed_as_set(packed) == sorted(agg.event_hashes[row])


def write_changes(fields: dict[bytes, bytes], agg: CustomerAggregates) -> None:
    """Apply ``agg``'s changes to a customer's stored ``fields`` as the store's commit
    does (:func:`core.customer_encoding.changed_fields`), then clear its change tracking."""
    to_set, to_delete = changed_fields(agg)
    for name in to_delete:
        fields.pop(name.encode(), None)
    for name, value in to_set:
        fields[name.encode()] = value
    agg.mark_written()


def pages_of(fields: dict[bytes, bytes], day: int) -> list[bytes]:
    prefix = f"{HASH_PAGE_PREFIX}{day}:".encode()
    return sorted(name for name in fields if name.startswith(prefix))


def busy_day_written(n: int) -> tuple[dict[bytes, bytes], CustomerAggregates, list[Event]]:
    """A customer with ``n`` activity events on DAY0, written every 10 events as the store
    does, with a restart (a reload from the written fields) mid-page; checks that each
    write sets only the pages that filled since the last one."""
    fields: dict[bytes, bytes] = {}
    agg = CustomerAggregates("c1")
    busy: list[Event] = [like(f"busy-{i}", DAY0, hour=i % 24) for i in range(n)]
    for i, event in enumerate(busy):
        assert agg.apply(event, RETENTION, DEDUP)
        if i % 10 == 9 or i == n - 1:
            before = set(fields)
            to_set, _ = changed_fields(agg)
            written_pages = [name for name, _ in to_set if name.startswith(HASH_PAGE_PREFIX)]
            assert len(written_pages) <= 1  # 10 events fill at most one page
            assert {name.encode() for name in written_pages}.isdisjoint(before)
            for name, value in to_set:
                fields[name.encode()] = value
            agg.mark_written()
            if i == 139:  # a restart mid-page: the state is read back from the store
                agg = decode_customer("c1", fields).aggregates
    return fields, agg, busy


def test_a_busy_day_writes_each_hash_page_once_and_reads_back_whole() -> None:
    """A day with 3.5 pages of activity events: the store holds its full pages and a tile
    with the rest, reads back the same state and recognises every replay."""
    n = 3 * HASH_PAGE + HASH_PAGE // 2
    fields, agg, busy = busy_day_written(n)
    assert len(pages_of(fields, DAY0)) == 3
    tile = msgspec.msgpack.decode(fields[f"{TILE_PREFIX}{DAY0}".encode()])
    assert len(tile[1]) == 4 * (HASH_PAGE // 2)  # the tail: hashes after the last page
    again = decode_customer("c1", fields).aggregates
    assert again.snapshot() == built(busy).snapshot() == agg.snapshot()
    assert not any(again.apply(event, RETENTION, DEDUP) for event in busy)  # replays


def test_a_day_that_is_no_longer_the_newest_gets_its_pages_back_in_its_tile() -> None:
    """Activity on the next day: the busy day's tile is written once more with all its
    hashes, its pages are deleted, and the state reads back the same."""
    n = 3 * HASH_PAGE + HASH_PAGE // 2
    fields, agg, busy = busy_day_written(n)
    assert agg.apply(like("next", DAY0 + 1), RETENTION, DEDUP)
    write_changes(fields, agg)
    assert pages_of(fields, DAY0) == []
    tile = msgspec.msgpack.decode(fields[f"{TILE_PREFIX}{DAY0}".encode()])
    assert len(tile[1]) == 4 * n
    again = decode_customer("c1", fields).aggregates
    assert again.snapshot() == agg.snapshot()
    assert not any(again.apply(event, RETENTION, DEDUP) for event in busy)


def test_sealing_a_paged_day_deletes_its_pages_with_its_tile() -> None:
    """The next activity is beyond the dedup window: the busy day is sealed at once, and
    its pages go with its tile."""
    fields, agg, _ = busy_day_written(2 * HASH_PAGE + 3)
    assert pages_of(fields, DAY0)
    assert agg.apply(like("much-later", DAY0 + DEDUP + 1), RETENTION, DEDUP)
    write_changes(fields, agg)
    assert pages_of(fields, DAY0) == [] and f"{TILE_PREFIX}{DAY0}".encode() not in fields
    assert decode_customer("c1", fields).aggregates.snapshot() == agg.snapshot()
