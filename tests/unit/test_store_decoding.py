"""Reading customers back from their Redis hash fields: the batch decoder agrees with
loading each tile on its own, for tiles of every width, with and without event hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from core.aggregates import N_COUNTERS, C, CustomerAggregates, event_hash
from core.customer_encoding import (
    decode_customer,
    decode_customers,
    decode_for_reading,
    encode_scalars,
    encode_score,
    encode_tile,
)
from core.events import ItemReactionPayload, Like
from core.keys import SCALARS_FIELD, SCORE_FIELD, TILE_PREFIX
from core.scores import Score

_ENCODE = msgspec.msgpack.Encoder()


def tile_field(day: int) -> bytes:
    return f"{TILE_PREFIX}{day}".encode()


def random_customer(rng: np.random.Generator, customer_id: str) -> tuple[dict[bytes, bytes], dict]:
    """A customer's hash fields with tiles of random widths (0 to N_COUNTERS + 3: stored
    tiles trim trailing zeros, and a newer version may store more counters), and what
    each tile must read back as."""
    agg = CustomerAggregates(customer_id)
    agg.first_seen, agg.last_event = 1_700_000_000, 1_700_086_400
    agg.last_activity, agg.last_purchase = 1_700_086_400, -1
    fields: dict[bytes, bytes] = {SCALARS_FIELD.encode(): encode_scalars(agg)}
    expected = {}
    for day in rng.choice(np.arange(19_000, 19_400), size=int(rng.integers(0, 30)), replace=False):
        width = int(rng.integers(0, N_COUNTERS + 4))
        counts = rng.integers(0, 5000, size=width).tolist()
        hashes = rng.integers(0, 2**63, size=int(rng.integers(0, 6)), dtype=np.uint64)
        fields[tile_field(int(day))] = _ENCODE.encode([counts, hashes.astype("<u8").tobytes()])
        known = (counts + [0] * N_COUNTERS)[:N_COUNTERS]
        expected[int(day)] = (tuple(known), frozenset((hashes & 0xFFFF_FFFF).tolist()))
    score = Score(customer_id, 0.25, "low", "v1", 1700086400.5, 1700086400)
    fields[SCORE_FIELD.encode()] = encode_score(score)
    return fields, expected


def test_batch_decoding_matches_each_tile_loaded_alone() -> None:
    rng = np.random.default_rng(5)
    ids = [f"c{i}" for i in range(40)]
    made = [random_customer(rng, cid) for cid in ids]
    for with_hashes in (True, False):
        decoded = decode_customers(ids, [fields for fields, _ in made], with_hashes)
        for cid, (fields, expected), stored in zip(ids, made, decoded, strict=True):
            snapshot = stored.aggregates.snapshot()
            assert snapshot["tiles"] == {day: counts for day, (counts, _) in expected.items()}
            hashes = (
                {day: h for day, (_, h) in expected.items()}
                if with_hashes
                else {day: frozenset() for day in expected}
            )
            assert snapshot["hashes"] == hashes
            assert snapshot["first_seen"] == 1_700_000_000
            assert stored.score is not None and stored.score.scored_at == 1700086400.5
            alone = decode_customer(cid, fields, with_hashes)
            assert alone.aggregates.snapshot() == snapshot


def test_customers_never_seen_decode_as_new_states_among_known_ones() -> None:
    """An empty hash (a customer never seen) among stored ones: a new, empty state that
    counts events; its neighbours read as they would alone."""
    rng = np.random.default_rng(9)
    (a, _), (b, _) = random_customer(rng, "a"), random_customer(rng, "b")
    for with_hashes in (True, False):
        decoded = decode_customers(["a", "new", "b"], [a, {}, b], with_hashes)
        assert [d.aggregates.customer_id for d in decoded] == ["a", "new", "b"]
        fresh = decoded[1]
        assert fresh.score is None
        assert fresh.aggregates.snapshot() == CustomerAggregates("new").snapshot()
        assert (
            decoded[0].aggregates.snapshot()
            == decode_customer("a", a, with_hashes).aggregates.snapshot()
        )
        assert (
            decoded[2].aggregates.snapshot()
            == decode_customer("b", b, with_hashes).aggregates.snapshot()
        )
        like = Like(
            event_id="first",
            customer_id="new",
            event_time=datetime(2026, 1, 5, 12, tzinfo=UTC),
            payload=ItemReactionPayload(),
        )
        assert fresh.aggregates.apply(like) and not fresh.aggregates.apply(like)
        assert fresh.aggregates.tile(20_458)["like"] == 1


def test_reading_keeps_order_and_marks_unknown_customers() -> None:
    rng = np.random.default_rng(6)
    (a, _), (b, _) = random_customer(rng, "a"), random_customer(rng, "b")
    read = decode_for_reading(["a", "nobody", "b"], [a, {}, b])
    assert read[1] is None
    assert read[0] is not None and read[0].aggregates.customer_id == "a"
    assert read[2] is not None and read[2].aggregates.customer_id == "b"
    assert decode_for_reading([], []) == []


def test_a_customer_read_without_hashes_cannot_count_events() -> None:
    """Read for features only: counting an event into it raises instead of writing
    hashes that would be missing their history."""
    rng = np.random.default_rng(7)
    fields, expected = random_customer(rng, "c1")
    while not expected:
        fields, expected = random_customer(rng, "c1")
    stored = decode_customers(["c1"], [fields], with_event_hashes=False)[0].aggregates
    day = next(iter(expected))
    event = Like(
        event_id="new",
        customer_id="c1",
        event_time=datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day),
        payload=ItemReactionPayload(),
    )
    stored.last_event = (day + 1) * 86_400  # the tile's day is inside retention
    with pytest.raises(AttributeError):
        stored.apply(event, retention_days=100_000)


def test_a_loaded_customer_grows_past_its_loaded_tiles() -> None:
    """States share one counter array per batch; a new day reallocates one state's rows
    and leaves its neighbours' untouched."""
    rng = np.random.default_rng(8)
    made = [random_customer(rng, f"c{i}") for i in range(3)]
    while not all(expected for _, expected in made):
        made = [random_customer(rng, f"c{i}") for i in range(3)]
    decoded = decode_customers(["c0", "c1", "c2"], [f for f, _ in made])
    before = [d.aggregates.snapshot() for d in decoded]
    middle = decoded[1].aggregates
    newest = max(made[1][1])
    middle.last_event = newest * 86_400
    like = Like(
        event_id="fresh",
        customer_id="c1",
        event_time=datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=newest + 1),
        payload=ItemReactionPayload(),
    )
    assert middle.apply(like, retention_days=100_000)
    assert middle.snapshot()["tiles"][newest + 1] != (0,) * N_COUNTERS
    assert decoded[0].aggregates.snapshot() == before[0]
    assert decoded[2].aggregates.snapshot() == before[2]


def test_tiles_of_both_hash_widths_dedup_the_same_events() -> None:
    """A tile stored with 8-byte hashes (older releases) and one stored with 4-byte hashes
    both recognise an event they counted, and a re-encoded old tile keeps its hashes."""
    day = 20_000
    at = datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
    counted = Like(
        event_id="counted", customer_id="c1", event_time=at, payload=ItemReactionPayload()
    )
    fresh = Like(event_id="fresh", customer_id="c1", event_time=at, payload=ItemReactionPayload())
    wide = int.from_bytes(hashlib.blake2b(b"counted", digest_size=8).digest(), "little")
    counts = [0] * N_COUNTERS
    counts[C["like"]] = 1
    old = _ENCODE.encode([counts, np.array([wide], dtype="<u8").tobytes()])
    new = encode_tile(np.array(counts, dtype=np.int64), [event_hash("counted")])
    assert len(new) < len(old)
    for value in (old, new):
        fields = {tile_field(day): value}
        agg = decode_customers(["c1"], [fields])[0].aggregates
        agg.last_event = day * 86_400 + 43_200
        assert not agg.apply(counted)
        assert agg.apply(fresh)
        assert agg.tile(day)["like"] == 2
        [(_, tile_counts, hashes, transactions, _)] = list(agg.changed_tiles())
        assert transactions is None
        value = encode_tile(tile_counts, hashes, transactions)
        again = decode_customers(["c1"], [{tile_field(day): value}])
        assert again[0].aggregates.snapshot()["hashes"] == {
            day: frozenset({event_hash("counted"), event_hash("fresh")})
        }
