"""The demo's split of one simulation into history (before the present) and live events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from churnstream.demo.history import split_at_present, stamped_at_present
from core.events import encode_event
from offline.simulator import simulate

PRESENT = datetime(2026, 3, 10, 14, 30, 15, tzinfo=UTC)


def test_history_ends_at_the_present_and_live_events_follow_without_a_gap() -> None:
    split = split_at_present(customers=30, days=5, seed=3, present=PRESENT)
    assert split.config.start == datetime(2026, 3, 5, tzinfo=UTC)
    assert split.history, "five days of 30 customers have events"
    assert all(event.event_time < PRESENT for event in split.history)
    live = list(itertools.islice(split.live, 500))
    assert len(live) == 500 and all(event.event_time >= PRESENT for event in live)
    # Together they are the simulation itself, in its order: nothing lost, nothing added.
    whole = list(itertools.islice(simulate(split.config), len(split.history) + len(live)))
    assert [encode_event(e) for e in split.history + live] == [encode_event(e) for e in whole]
    assert split.history_customers == len({e.customer_id for e in split.history})


def test_live_events_are_stamped_with_the_clock_in_whole_seconds() -> None:
    split = split_at_present(customers=30, days=5, seed=3, present=PRESENT)
    originals = list(itertools.islice(split.live, 3))
    ticks = iter([1_800_000_000.7, 1_800_000_001.2, 1_800_000_001.9])
    stamped = list(stamped_at_present(originals, clock=lambda: next(ticks)))
    assert [e.event_time.timestamp() for e in stamped] == [
        1_800_000_000,
        1_800_000_001,
        1_800_000_001,
    ]
    for before, after in zip(originals, stamped, strict=True):
        assert (after.event_id, after.customer_id, after.type) == (
            before.event_id,
            before.customer_id,
            before.type,
        )
