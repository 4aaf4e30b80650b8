"""The API's garbage-collector settings (serving.garbage_collector)."""

from __future__ import annotations

import gc

import pytest

from serving.garbage_collector import YOUNG_THRESHOLD, collecting_rarely


def test_young_passes_are_rarer_while_serving_and_the_thresholds_come_back() -> None:
    before = gc.get_threshold()
    with collecting_rarely(young=12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0  # what was loaded at start is never rescanned
    assert gc.get_threshold() == before


def test_thresholds_come_back_when_the_app_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collecting_rarely():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        raise RuntimeError("lifespan failed")
    assert gc.get_threshold() == before
