"""Per-day row tables: events as numpy columns (:class:`_Rows`), and helpers over runs of
equal keys in sorted arrays."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np


@dataclass
class _Rows:
    """A table of events as numpy columns.

    ``t`` epoch seconds (UTC); ``c`` customer index; ``kind`` a ``K_*`` code; ``seq`` the
    customer's event sequence number; ``sn`` the session number (session events) or the
    order number (transactions); ``i0``, ``i1``, ``f0`` kind-specific values (see
    :class:`_Builders`).
    """

    t: np.ndarray
    c: np.ndarray
    kind: np.ndarray
    seq: np.ndarray
    sn: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    f0: np.ndarray

    @classmethod
    def make(
        cls,
        t: np.ndarray,
        c: np.ndarray,
        kind: int | np.ndarray,
        *,
        sn: int | np.ndarray = 0,
        i0: int | np.ndarray = -1,
        i1: int | np.ndarray = -1,
        f0: float | np.ndarray = 0.0,
    ) -> _Rows:
        size = len(t)

        def column(value: float | np.ndarray, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype=dtype), (size,))

        return cls(
            t=np.asarray(t, dtype=np.int64),
            c=np.asarray(c, dtype=np.int64),
            kind=column(kind, np.int64),
            seq=column(-1, np.int64),
            sn=column(sn, np.int64),
            i0=column(i0, np.int64),
            i1=column(i1, np.int64),
            f0=column(f0, np.float64),
        )

    @classmethod
    def empty(cls) -> _Rows:
        return cls.make(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0)

    @classmethod
    def concat(cls, parts: Iterable[_Rows]) -> _Rows:
        parts = list(parts)
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def take(self, index: np.ndarray | slice) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sorted_by_customer(self) -> _Rows:
        """Stable order by (customer, time), keeping generation order among ties."""
        return self.take(np.lexsort((np.arange(len(self)), self.t, self.c)))

    def __len__(self) -> int:
        return len(self.t)


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values begins in the sorted array ``keys``."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _run_ids(keys: np.ndarray) -> np.ndarray:
    """0, 0, 1, 1, 1, 2 ... numbering the runs of equal values in the sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.cumsum(np.r_[False, keys[1:] != keys[:-1]])


def _run_rank(keys: np.ndarray) -> np.ndarray:
    """0, 1, 0, 1, 2, 0 ... the position of each element within its run in sorted ``keys``."""
    return np.arange(len(keys)) - _run_starts(keys)[_run_ids(keys)]


def _exclusive_cumsum(values: np.ndarray, run_ids: np.ndarray) -> np.ndarray:
    """Sum of the earlier values of the same run (runs given by consecutive ``run_ids``)."""
    total = np.cumsum(values) - values
    if len(values) == 0:
        return total
    new_run = np.r_[True, run_ids[1:] != run_ids[:-1]]
    return total - total[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]
