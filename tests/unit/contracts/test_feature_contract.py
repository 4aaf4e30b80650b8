"""The contract every feature in :data:`core.features.FEATURES` keeps, one test id per
feature, on the customer histories of :mod:`tests.unit.contracts.histories`:

* its values are finite, at times before, during and long after a customer's events;
* it moves as its ``silence`` declares while time passes without events (``1`` never
  falls, ``-1`` never rises), over 400 days of silence (every window empties); a feature
  that says it turns when an event leaves the longest window (365 days) is held to its
  direction until then;
* its values do not depend on the order in which a customer's events arrive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from core.feature_context import WINDOW_DAYS
from core.features import FEATURE_NAMES, FEATURES, FeatureDef, feature_matrix
from tests.unit.contracts.histories import DAY, History, all_histories

SILENCE_STEP_S = 31 * 3600  # not a whole day: steps land at every time of day
SILENCE_DAYS = 400
# Features whose description says they turn when an event leaves the longest window.
TURN_WHEN_AN_EVENT_LEAVES_THE_LONGEST_WINDOW = {"purchases_missed"}


@dataclass(frozen=True)
class Evaluated:
    """Feature rows of every history: at fixed times (``times``), in three arrival orders,
    and along each customer's silence (``silence``; ``silence_owner`` is the history of
    each row, ``inside_longest_window`` whether every kept day tile still counts in it)."""

    in_order: np.ndarray
    reversed_order: np.ndarray
    shuffled: np.ndarray
    silence: np.ndarray
    silence_owner: np.ndarray
    inside_longest_window: np.ndarray


def _times(history: History) -> list[int]:
    first, last = history.first_time, history.last_time
    return [
        first - DAY,
        (first + last) // 2,
        last + 1,
        last + 30 * DAY + 7 * 3600,
        last + 400 * DAY,
    ]


def _silence(history: History) -> tuple[np.ndarray, np.ndarray]:
    """Features along ``SILENCE_DAYS`` of silence, and which rows are inside the window."""
    state = history.state()
    times = np.arange(history.last_time + 1, history.last_time + SILENCE_DAYS * DAY, SILENCE_STEP_S)
    window_end = (int(state.tile_days().min()) + max(WINDOW_DAYS)) * DAY
    return feature_matrix([state] * len(times), times), times <= window_end


@pytest.fixture(scope="module")
def evaluated() -> Evaluated:
    histories = all_histories()
    rng = random.Random(17)
    times = [t for h in histories for t in _times(h)]

    def at_times(order_of: dict[int, list[int]] | None) -> np.ndarray:
        states = []
        for i, history in enumerate(histories):
            state = history.state(None if order_of is None else order_of[i])
            states += [state] * len(_times(history))
        return feature_matrix(states, times)

    backwards = {i: list(range(len(h.events)))[::-1] for i, h in enumerate(histories)}
    shuffled = {i: rng.sample(range(len(h.events)), len(h.events)) for i, h in enumerate(histories)}
    silences = [_silence(history) for history in histories]
    return Evaluated(
        in_order=at_times(None),
        reversed_order=at_times(backwards),
        shuffled=at_times(shuffled),
        silence=np.vstack([rows for rows, _ in silences]),
        silence_owner=np.concatenate(
            [np.full(len(rows), i) for i, (rows, _) in enumerate(silences)]
        ),
        inside_longest_window=np.concatenate([inside for _, inside in silences]),
    )


def _column(feature: FeatureDef) -> int:
    return FEATURE_NAMES.index(feature.name)


by_feature = pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)


@by_feature
def test_values_are_finite(feature: FeatureDef, evaluated: Evaluated) -> None:
    for matrix in (evaluated.in_order, evaluated.silence):
        values = matrix[:, _column(feature)]
        assert np.isfinite(values).all(), f"{feature.name}: {values[~np.isfinite(values)][:5]}"


@pytest.mark.parametrize("feature", [f for f in FEATURES if f.silence != 0], ids=lambda f: f.name)
def test_silence_moves_the_declared_way(feature: FeatureDef, evaluated: Evaluated) -> None:
    rows = np.ones(len(evaluated.silence), dtype=bool)
    if feature.name in TURN_WHEN_AN_EVENT_LEAVES_THE_LONGEST_WINDOW:
        rows = evaluated.inside_longest_window
    values = evaluated.silence[rows, _column(feature)]
    owner = evaluated.silence_owner[rows]
    same_customer = owner[1:] == owner[:-1]
    steps = np.diff(values)[same_customer] * feature.silence  # >= 0 when it moves as declared
    tolerance = 1e-9 * np.maximum(1.0, np.abs(values[1:][same_customer]))
    wrong = steps < -tolerance
    assert not wrong.any(), (
        f"{feature.name} (silence={feature.silence}) moved the other way "
        f"{int(wrong.sum())} time(s), by up to {float(-steps.min()):.3g}"
    )


@by_feature
def test_values_do_not_depend_on_event_order(feature: FeatureDef, evaluated: Evaluated) -> None:
    column = _column(feature)
    expected = evaluated.in_order[:, column]
    np.testing.assert_array_equal(evaluated.reversed_order[:, column], expected)
    np.testing.assert_array_equal(evaluated.shuffled[:, column], expected)
