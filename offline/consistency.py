"""Comparing two computations of the same customers: the maths of ``churnstream verify``.

Two levels, both pure functions of :class:`core.aggregates.CustomerAggregates`:

* **state** — :func:`state_differences` lists, in plain words, every way two customers'
  aggregates differ: day tiles present on one side only, counters that differ, event ids
  counted on one side only, and the scalars (first/last event times, plan level). Equal
  states give equal features at every time.
* **features** — :class:`FeatureComparison` accumulates, over any number of chunks of
  customers, per feature: the largest absolute difference, the mean SMAPE and how many
  customers differ, the way Airbnb's Chronon reports online-offline consistency.

SMAPE (symmetric mean absolute percentage error) of one value pair ``a``, ``b`` is
``2 |a - b| / (|a| + |b|)``, and 0 when both are 0: a number between 0 (equal) and 2
(opposite signs, or one side 0). Reported means are in percent, so between 0 and 200.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from core.aggregates import COUNTERS, DAY_SECONDS, NEVER, CustomerAggregates

SCALARS = ("first_seen", "last_event", "last_activity", "last_purchase", "level", "level_key")


def smape(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise SMAPE of two arrays of the same shape (0 where both are 0; NaN on
    exactly one side counts as the largest error, 2; NaN on both sides as equal).

    >>> smape(np.array([1.0, 0.0, 2.0, -1.0]), np.array([1.0, 0.0, 1.0, 1.0])).round(3).tolist()
    [0.0, 0.0, 0.667, 2.0]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denominator = np.abs(a) + np.abs(b)
    out = np.zeros(np.broadcast(a, b).shape, dtype=np.float64)
    np.divide(2.0 * np.abs(a - b), denominator, out=out, where=denominator > 0)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    out[nan_a != nan_b] = 2.0
    out[nan_a & nan_b] = 0.0
    return out


def differs(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    """Where ``a`` and ``b`` differ by more than ``tolerance`` times the larger of 1 and
    their magnitudes (absolute near zero, relative for large values); NaN equals NaN only.

    >>> differs(np.array([1.0, 1e12, 0.0]), np.array([1.0 + 1e-12, 1e12 + 1.0, 1e-6]),
    ...         tolerance=1e-9).tolist()
    [False, False, True]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    with np.errstate(invalid="ignore"):
        beyond = np.abs(a - b) > tolerance * scale
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    result: np.ndarray = np.where(nan_a | nan_b, nan_a != nan_b, beyond)
    return result


@dataclass(frozen=True)
class FeatureDiff:
    """How one feature compares over all compared customers."""

    name: str
    customers: int
    mismatched: int
    max_abs_diff: float
    smape_percent: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class FeatureComparison:
    """Per-feature statistics accumulated over chunks of (expected, actual) matrices.

    >>> cmp = FeatureComparison(["x", "y"], tolerance=1e-9)
    >>> cmp.add(np.array([[1.0, 5.0], [2.0, 0.0]]), np.array([[1.0, 5.0], [3.0, 0.0]])).tolist()
    [False, True]
    >>> [(d.name, d.mismatched, d.max_abs_diff, round(d.smape_percent, 1)) for d in cmp.results()]
    [('x', 1, 1.0, 20.0), ('y', 0, 0.0, 0.0)]
    """

    def __init__(self, names: Sequence[str], tolerance: float) -> None:
        self.names = tuple(names)
        self.tolerance = tolerance
        self.customers = 0
        self._max_abs = np.zeros(len(self.names))
        self._smape_sum = np.zeros(len(self.names))
        self._mismatched = np.zeros(len(self.names), dtype=np.int64)

    def add(self, expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
        """Account one chunk (rows: customers, columns: ``names``); return, per row,
        whether any feature differs beyond the tolerance."""
        if expected.shape != actual.shape or expected.shape[1:] != (len(self.names),):
            raise ValueError(
                f"feature matrices of shapes {expected.shape} and {actual.shape} do not "
                f"match {len(self.names)} features"
            )
        if not expected.shape[0]:
            return np.zeros(0, dtype=bool)
        gap = np.abs(expected - actual)
        gap = np.where(np.isnan(expected) & np.isnan(actual), 0.0, gap)
        gap = np.where(np.isnan(gap), np.inf, gap)
        self._max_abs = np.maximum(self._max_abs, gap.max(axis=0))
        self._smape_sum += smape(expected, actual).sum(axis=0)
        bad = differs(expected, actual, self.tolerance)
        self._mismatched += bad.sum(axis=0)
        self.customers += expected.shape[0]
        rows: np.ndarray = bad.any(axis=1)
        return rows

    def results(self) -> list[FeatureDiff]:
        n = max(self.customers, 1)
        return [
            FeatureDiff(
                name=name,
                customers=self.customers,
                mismatched=int(self._mismatched[i]),
                max_abs_diff=float(self._max_abs[i]),
                smape_percent=float(100.0 * self._smape_sum[i] / n),
            )
            for i, name in enumerate(self.names)
        ]


def _day_text(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_SECONDS, UTC).strftime("%Y-%m-%d")


def _scalar_text(name: str, value: object) -> str:
    if name in ("first_seen", "last_event", "last_activity", "last_purchase"):
        assert isinstance(value, int)
        if value == NEVER:
            return "never"
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return repr(value)


def state_differences(
    expected: CustomerAggregates, actual: CustomerAggregates, limit: int = 10
) -> list[str]:
    """How ``actual``'s state differs from ``expected``'s, in plain words (at most
    ``limit`` lines, the last one saying how many more there are); empty when equal.

    >>> from datetime import UTC, datetime
    >>> from core.events import Like, ItemReactionPayload
    >>> def like(i, day):
    ...     return Like(event_id=f"e{i}", customer_id="c1", payload=ItemReactionPayload(),
    ...                 event_time=datetime(2026, 1, day, 12, tzinfo=UTC))
    >>> a, b = CustomerAggregates("c1"), CustomerAggregates("c1")
    >>> for agg, events in ((a, [like(1, 5), like(2, 5)]), (b, [like(1, 5), like(3, 6)])):
    ...     for event in events:
    ...         _ = agg.apply(event)
    >>> for line in state_differences(a, b):
    ...     print(line)
    day 2026-01-06: only in the actual state
    day 2026-01-05: like 2 expected, 1 actual
    day 2026-01-05: 1 event id(s) counted only in the expected state, 0 only in the actual
    last_event: 2026-01-05T12:00:00Z expected, 2026-01-06T12:00:00Z actual
    last_activity: 2026-01-05T12:00:00Z expected, 2026-01-06T12:00:00Z actual
    """
    lines: list[str] = []
    want, got = expected.snapshot(), actual.snapshot()
    want_tiles: dict[int, tuple[int, ...]] = want["tiles"]  # type: ignore[assignment]
    got_tiles: dict[int, tuple[int, ...]] = got["tiles"]  # type: ignore[assignment]
    want_hashes: dict[int, frozenset[int]] = want["hashes"]  # type: ignore[assignment]
    got_hashes: dict[int, frozenset[int]] = got["hashes"]  # type: ignore[assignment]
    for day in sorted(set(want_tiles) - set(got_tiles)):
        lines.append(f"day {_day_text(day)}: only in the expected state")
    for day in sorted(set(got_tiles) - set(want_tiles)):
        lines.append(f"day {_day_text(day)}: only in the actual state")
    for day in sorted(set(want_tiles) & set(got_tiles)):
        for name, w, g in zip(COUNTERS, want_tiles[day], got_tiles[day], strict=True):
            if w != g:
                lines.append(f"day {_day_text(day)}: {name} {w} expected, {g} actual")
        only_want = len(want_hashes[day] - got_hashes[day])
        only_got = len(got_hashes[day] - want_hashes[day])
        if only_want or only_got:
            lines.append(
                f"day {_day_text(day)}: {only_want} event id(s) counted only in the expected "
                f"state, {only_got} only in the actual"
            )
    for name in SCALARS:
        if want[name] != got[name]:
            lines.append(
                f"{name}: {_scalar_text(name, want[name])} expected, "
                f"{_scalar_text(name, got[name])} actual"
            )
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"... and {len(lines) - limit + 1} more difference(s)"]
    return lines
