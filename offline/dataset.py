"""The point-in-time training set: features strictly before each cutoff, labels strictly after.

One row per (customer, cutoff). For a cutoff ``c`` (epoch seconds, UTC) and a horizon of
``h`` days:

* **features** are ``feature_matrix`` of the customer's :class:`CustomerAggregates` at ``c``,
  built from the customer's events with ``event_time < c`` only — the same code, and the
  same state, the worker would have had at that instant;
* **rows** exist for every customer seen before ``c`` who has not cancelled before ``c``
  (a cancellation at ``event_time < c`` excludes the customer from that cutoff on; a
  silent customer stays in, since nothing says they left);
* **labels** look only at events in ``(c, c + h days]``: ``"cancellation"`` is 1 when the
  customer has a ``cancellation`` there, ``"inactivity"`` is 1 when the customer has no
  event at all there, ``"cancellation_or_inactivity"`` is 1 when either holds, and
  ``"no_purchase"`` (for transaction data) is 1 when the customer has no ``purchase``
  there (a refund is not a purchase). (An event at exactly ``c`` is in neither the
  features nor the label.)
* **censoring**: a cutoff whose label window ends after the end of observation
  (``observed_until``, by default the last event time) is dropped, since its labels would
  be incomplete.

Times are whole seconds (rounded down), as in the store. Events must come in event-time
order (e.g. :func:`offline.simulator.simulate`, or an archive sorted by time); disorder
between two consecutive cutoffs is harmless (the aggregates are order-free), but an event
earlier than a cutoff already passed raises :class:`ValueError`, because the snapshot taken
at that cutoff would have been wrong. One pass, memory bounded by the aggregates of the
customers seen plus the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from core.aggregates import DAY_SECONDS, CustomerAggregates, epoch_seconds
from core.events import Event
from core.features import FEATURE_NAMES, feature_matrix

LabelKind = Literal["cancellation", "inactivity", "cancellation_or_inactivity", "no_purchase"]
LABEL_KINDS: tuple[LabelKind, ...] = (
    "cancellation",
    "inactivity",
    "cancellation_or_inactivity",
    "no_purchase",
)
LABEL_DEFINITIONS: dict[str, str] = {
    "cancellation": "a cancellation within {h} days after the cutoff",
    "inactivity": "no event at all within {h} days after the cutoff",
    "cancellation_or_inactivity": "a cancellation, or no event at all, within {h} days after "
    "the cutoff",
    "no_purchase": "no purchase within {h} days after the cutoff",
}


@dataclass(frozen=True)
class Dataset:
    """Rows of (customer, cutoff). ``X`` has one column per name in ``feature_names``
    (float64), ``y`` is 0/1 (int8), ``cutoffs`` are epoch seconds (int64, UTC), rows are
    ordered by cutoff, then by the customer's first appearance in the stream."""

    X: np.ndarray
    y: np.ndarray
    customer_ids: list[str]
    cutoffs: np.ndarray
    feature_names: tuple[str, ...]
    label: LabelKind = "cancellation_or_inactivity"
    horizon_days: int = 14

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def base_rate(self) -> float:
        """Share of rows labelled 1 (0.0 for an empty set)."""
        return float(self.y.mean()) if len(self) else 0.0

    def select(self, rows: np.ndarray) -> Dataset:
        """The rows picked by a boolean mask or an index array, in that order."""
        index = np.flatnonzero(rows) if rows.dtype == np.bool_ else np.asarray(rows)
        return Dataset(
            X=self.X[index],
            y=self.y[index],
            customer_ids=[self.customer_ids[i] for i in index.tolist()],
            cutoffs=self.cutoffs[index],
            feature_names=self.feature_names,
            label=self.label,
            horizon_days=self.horizon_days,
        )


def to_epoch_seconds(when: datetime) -> int:
    """An aware datetime as whole epoch seconds (rounded down); naive times are refused."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone; cutoffs must be aware (UTC)")
    return int(when.timestamp() // 1)


class _Builder:
    """The state of one pass over the events (see :func:`build_dataset`)."""

    def __init__(
        self, cutoffs: list[int], horizon_s: int, retention_days: int, names: Sequence[str]
    ) -> None:
        self.cutoffs = cutoffs
        self.horizon_s = horizon_s
        self.retention_days = retention_days
        self.names = tuple(names)
        self.aggregates: dict[str, CustomerAggregates] = {}
        self.cancelled: set[str] = set()
        self.pending: dict[str, list[int]] = {}  # customer -> rows whose window is open
        self.row_cutoff: list[int] = []
        self.seen = bytearray()  # row had an event in its label window
        self.cancel = bytearray()  # row had a cancellation in its label window
        self.bought = bytearray()  # row had a purchase in its label window
        self.blocks: list[np.ndarray] = []
        self.ids: list[str] = []
        self.last_time: int | None = None

    def run(self, events: Iterable[Event]) -> None:
        cutoffs, n_cutoffs = self.cutoffs, len(self.cutoffs)
        index = 0
        next_cut = cutoffs[0] if n_cutoffs else None
        floor: int | None = None  # the latest cutoff snapshotted: nothing may come before it
        aggregates, pending, retention = self.aggregates, self.pending, self.retention_days
        row_cutoff, seen, cancel, horizon = self.row_cutoff, self.seen, self.cancel, self.horizon_s
        bought = self.bought
        last = None
        for event in events:
            at = epoch_seconds(event)
            while next_cut is not None and at >= next_cut:
                self.snapshot(next_cut)
                floor = next_cut
                index += 1
                next_cut = cutoffs[index] if index < n_cutoffs else None
            if floor is not None and at < floor:
                raise ValueError(
                    f"event {event.event_id} at {event.event_time.isoformat()} comes after the "
                    f"stream passed the cutoff at epoch {floor}: events must be in event-time "
                    "order (sort them first)"
                )
            customer = event.customer_id
            aggregate = aggregates.get(customer)
            if aggregate is None:
                aggregate = aggregates[customer] = CustomerAggregates(customer)
            aggregate.apply(event, retention)
            is_cancel = event.type == "cancellation"
            is_purchase = event.type == "purchase"
            if is_cancel:
                self.cancelled.add(customer)
            rows = pending.get(customer)
            if rows:
                for row in rows:
                    cut = row_cutoff[row]
                    if cut < at <= cut + horizon:
                        seen[row] = 1
                        if is_cancel:
                            cancel[row] = 1
                        if is_purchase:
                            bought[row] = 1
            if last is None or at > last:
                last = at
        while next_cut is not None:  # cutoffs after the last event see every event
            self.snapshot(next_cut)
            index += 1
            next_cut = cutoffs[index] if index < n_cutoffs else None
        self.last_time = last

    def snapshot(self, cut: int) -> None:
        """Rows for every customer seen, and not cancelled, before ``cut``."""
        for rows in self.pending.values():  # drop label windows closed before ``cut``
            if rows and self.row_cutoff[rows[0]] + self.horizon_s < cut:
                rows[:] = [r for r in rows if self.row_cutoff[r] + self.horizon_s >= cut]
        customers = [c for c in self.aggregates if c not in self.cancelled]
        if not customers:
            return
        self.blocks.append(feature_matrix([self.aggregates[c] for c in customers], cut, self.names))
        first = len(self.row_cutoff)
        for offset, customer in enumerate(customers):
            self.pending.setdefault(customer, []).append(first + offset)
        self.ids.extend(customers)
        self.row_cutoff.extend([cut] * len(customers))
        self.seen.extend(bytes(len(customers)))
        self.cancel.extend(bytes(len(customers)))
        self.bought.extend(bytes(len(customers)))


def build_dataset(
    events: Iterable[Event],
    cutoffs: Sequence[datetime],
    horizon_days: int,
    label: LabelKind = "cancellation_or_inactivity",
    retention_days: int = 120,
    *,
    observed_until: datetime | None = None,
    feature_names: Sequence[str] = FEATURE_NAMES,
) -> Dataset:
    """Build the point-in-time dataset of ``events`` (in event-time order) at ``cutoffs``.

    ``horizon_days`` is the label window after each cutoff; ``retention_days`` is passed to
    :meth:`CustomerAggregates.apply` (use the store's ``CHURN_RETENTION_DAYS``);
    ``observed_until`` is when the event log ends (default: the last event time): cutoffs
    whose window ``(c, c + horizon]`` ends after it are dropped. See the module docstring.

    >>> from datetime import UTC, datetime, timedelta
    >>> from core.events import Play, PlayPayload
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> day = lambda d: t0 + timedelta(days=d)
    >>> plays = [Play(event_id=f"e{d}", customer_id="c1", event_time=day(d),
    ...               payload=PlayPayload(duration_s=60)) for d in (0, 1, 2, 12, 20)]
    >>> ds = build_dataset(plays, [day(3), day(10), day(15)], horizon_days=7,
    ...                    label="inactivity", feature_names=["plays_30d"])
    >>> ds.X.tolist(), ds.y.tolist()  # day 15 is dropped: its window runs past day 20
    ([[3.0], [3.0]], [1, 0])
    """
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    if label not in LABEL_KINDS:
        raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    horizon_s = horizon_days * DAY_SECONDS
    cuts = sorted({to_epoch_seconds(c) for c in cutoffs})
    builder = _Builder(cuts, horizon_s, retention_days, feature_names)
    builder.run(events)

    names = tuple(feature_names)
    row_cutoff = np.asarray(builder.row_cutoff, dtype=np.int64)
    X = np.concatenate(builder.blocks) if builder.blocks else np.zeros((0, len(names)))
    seen = np.frombuffer(bytes(builder.seen), dtype=np.uint8).astype(bool)
    cancel = np.frombuffer(bytes(builder.cancel), dtype=np.uint8).astype(bool)
    bought = np.frombuffer(bytes(builder.bought), dtype=np.uint8).astype(bool)
    if label == "cancellation":
        y = cancel
    elif label == "inactivity":
        y = ~seen
    elif label == "no_purchase":
        y = ~bought
    else:
        y = cancel | ~seen

    if observed_until is not None:
        end: int | None = to_epoch_seconds(observed_until)
    else:
        end = builder.last_time
    keep = (
        row_cutoff + horizon_s <= end if end is not None else np.zeros(len(row_cutoff), dtype=bool)
    )
    index = np.flatnonzero(keep)
    return Dataset(
        X=X[index],
        y=y[index].astype(np.int8),
        customer_ids=[builder.ids[i] for i in index.tolist()],
        cutoffs=row_cutoff[index],
        feature_names=names,
        label=label,
        horizon_days=horizon_days,
    )
