"""What the worker keeps out of the collector's passes (stream.garbage_collector)."""

from __future__ import annotations

import gc
import weakref

from stream.garbage_collector import KeptStateFreezer


class _Node:
    """A GC-tracked object that can refer to itself (a reference cycle)."""

    def __init__(self) -> None:
        self.other: _Node | None = None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_a_batch_keeps_is_frozen_and_still_freed_when_dropped() -> None:
    freezer = KeptStateFreezer()
    kept = [_Node() for _ in range(1_000)]
    before = gc.get_freeze_count()
    freezer.after_batch()
    assert gc.get_freeze_count() >= before + len(kept)
    assert all(obj is not kept for obj in gc.get_objects())  # in no generation's passes
    probe = weakref.ref(kept[0])
    del kept
    assert probe() is None  # reference counting frees frozen objects as before


def test_a_cycle_frozen_with_a_batch_is_collected_at_the_idle_full_collection() -> None:
    clock = _Clock()
    freezer = KeptStateFreezer(every_seconds=600, clock=clock)
    cycle = _Node()
    cycle.other = cycle
    probe = weakref.ref(cycle)
    freezer.after_batch()
    del cycle
    gc.collect()
    assert probe() is not None  # frozen: no pass looks at it

    clock.now = 599.0
    freezer.when_idle()
    assert probe() is not None  # not yet due

    clock.now = 600.0
    freezer.when_idle()
    assert probe() is None
    assert gc.get_freeze_count() > 0  # everything still alive is frozen again

    again = _Node()
    again.other = again
    again_probe = weakref.ref(again)
    freezer.after_batch()
    del again
    clock.now = 1_199.0
    freezer.when_idle()
    assert again_probe() is not None  # the next one is due 600 s after the last
