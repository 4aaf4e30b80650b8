"""The stored layout of a customer (core.customer_encoding) and the dedup window
(CHURN_DEDUP_DAYS) of core.aggregates: sealed tiles round-trip, a store written before
sealed tiles existed still reads and deduplicates, and the window's edge is exact."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np

from core.aggregates import DAY_SECONDS, N_COUNTERS, CustomerAggregates, event_hash
from core.customer_encoding import (
    decode_customer,
    decode_customers,
    encode_scalars,
    encode_sealed,
    encode_tile,
)
from core.events import Event, ItemReactionPayload, Like, Play, PlayPayload
from core.keys import SCALARS_FIELD, SEALED_FIELD, TILE_PREFIX

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


def history(days: int = 90, seed: int = 1) -> list[Event]:
    """A customer's events over ``days`` days (a few a day, on most days), in time order."""
    rng = random.Random(seed)
    events: list[Event] = []
    for day in range(DAY0, DAY0 + days):
        for i in range(rng.choice([0, 0, 1, 3, 7])):
            event_id = f"e{day}-{i}"
            if rng.random() < 0.5:
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
                agg.tile_counts()[row], agg.event_hashes[row]
            )
    return fields


def test_a_customer_round_trips_with_sealed_and_open_tiles() -> None:
    agg = built(history())
    newest_day = agg.last_event // DAY_SECONDS
    assert agg.sealed_through == newest_day - DEDUP
    fields = stored_fields(agg)
    tile_days = [int(name[2:]) for name in fields if name.startswith(TILE_PREFIX.encode())]
    assert tile_days and min(tile_days) > newest_day - DEDUP
    assert SEALED_FIELD.encode() in fields
    back = decode_customer("c1", fields).aggregates
    assert back.snapshot() == agg.snapshot()
    assert back.sealed_through <= agg.sealed_through  # the last sealed day with events
    sealed_days, _ = back.sealed_tiles()
    assert set(sealed_days.tolist()) == {
        d for d in agg.tile_days().tolist() if d <= newest_day - DEDUP
    }
    assert all(not back.snapshot()["hashes"][d] for d in sealed_days.tolist())  # type: ignore[index]
    reading = decode_customers(["c1"], [fields], with_event_hashes=False)[0].aggregates
    assert reading.snapshot()["tiles"] == agg.snapshot()["tiles"]


def test_sealed_field_keeps_every_counter_of_every_day() -> None:
    rng = np.random.default_rng(4)
    days = rng.choice(np.arange(DAY0, DAY0 + 90), size=30, replace=False)
    counts = rng.integers(0, 70_000, size=(30, N_COUNTERS))
    counts[:, -3:] = 0  # trailing zeros are trimmed on write
    fields = {SEALED_FIELD.encode(): encode_sealed(days, counts)}
    assert encode_sealed(days[:0], counts[:0]) is None
    back = decode_customer("c1", fields)  # type: ignore[arg-type]
    tiles = back.aggregates.snapshot()["tiles"]
    assert tiles == {
        int(d): tuple(row) for d, row in zip(days.tolist(), counts.tolist(), strict=True)
    }
    assert back.aggregates.sealed_through == int(days.max())


def test_an_event_just_inside_the_window_counts_and_one_just_outside_is_refused() -> None:
    agg = built(history())
    newest_day = agg.last_event // DAY_SECONDS
    before = agg.snapshot()

    outside = like("late-out", newest_day - DEDUP)
    assert agg.is_too_late(newest_day - DEDUP, DEDUP)
    assert not agg.apply(outside, RETENTION, DEDUP)
    assert agg.snapshot() == before  # neither counted nor moving a scalar

    inside = like("late-in", newest_day - DEDUP + 1)
    likes = agg.tile(newest_day - DEDUP + 1)["like"]
    assert not agg.is_too_late(newest_day - DEDUP + 1, DEDUP)
    assert agg.apply(inside, RETENTION, DEDUP)
    assert agg.tile(newest_day - DEDUP + 1)["like"] == likes + 1
    assert not agg.apply(inside, RETENTION, DEDUP)  # and it is recognised again


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


def test_a_store_written_before_sealed_tiles_reads_and_is_sealed_on_the_next_new_day() -> None:
    """Every day a ``d:<day>`` field (8-byte hashes in two-item tiles, 4-byte ones in
    three-item tiles), no ``s``: it reads as it is, recognises its events, and its days
    beyond the window move to ``s`` when the customer next gets a new day."""
    events = history()
    full = built(events, dedup=None)  # every tile with its hashes, as older releases kept
    fields = {SCALARS_FIELD.encode(): encode_scalars(full)}
    for row, day in enumerate(full.tile_days().tolist()):
        counts = full.tile_counts()[row]
        if day % 2:
            ids = [e.event_id for e in events if e.event_time.timestamp() // DAY_SECONDS == day]
            wide = [
                int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little")
                for i in ids
            ]
            value = _ENCODE.encode([counts.tolist(), np.array(wide, dtype="<u8").tobytes()])
        else:
            value = encode_tile(counts, full.event_hashes[row])
        fields[f"{TILE_PREFIX}{day}".encode()] = value
    old = decode_customer("c1", fields).aggregates
    assert old.snapshot() == full.snapshot()
    assert not any(old.apply(e, RETENTION, DEDUP) for e in events)  # replays recognised

    newest_day = old.last_event // DAY_SECONDS
    assert old.apply(like("next-day", newest_day + 1), RETENTION, DEDUP)
    assert old.sealed_changed
    assert {d for d in full.tile_days().tolist() if d <= newest_day + 1 - DEDUP} == old.dropped_days
    rewritten = dict(fields)
    for day in old.dropped_days:
        del rewritten[f"{TILE_PREFIX}{day}".encode()]
    rewritten[SEALED_FIELD.encode()] = encode_sealed(*old.sealed_tiles())  # type: ignore[assignment]
    for day, counts, hashes in old.changed_tiles():
        rewritten[f"{TILE_PREFIX}{day}".encode()] = encode_tile(counts, hashes)
    rewritten[SCALARS_FIELD.encode()] = encode_scalars(old)
    again = decode_customer("c1", rewritten).aggregates
    assert again.snapshot() == old.snapshot()
    fresh = built([*events, like("next-day", newest_day + 1)])
    assert again.snapshot() == fresh.snapshot()


def test_retention_drops_sealed_tiles_from_the_sealed_field() -> None:
    agg = built(history(days=60))
    agg.mark_written()
    newest_day = agg.last_event // DAY_SECONDS
    oldest = int(agg.tile_days().min())
    jump = oldest + RETENTION  # drops the oldest day, seals everything up to jump - DEDUP
    assert jump > newest_day
    assert agg.apply(like("much-later", jump), RETENTION, DEDUP)
    assert oldest not in agg.snapshot()["tiles"]  # type: ignore[operator]
    assert agg.sealed_changed
    assert oldest not in agg.dropped_days  # it lived in the sealed field, not in a d: field
    assert event_hash("much-later") in agg.snapshot()["hashes"][jump]  # type: ignore[index]
