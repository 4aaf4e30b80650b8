"""The engine: the day-by-day simulator behind :func:`simulate`, which draws each day's
rows (sessions, plan changes, cancellations, transactions) and emits them as events in
time order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.events import Event
from offline.simulator.builders import _Builders
from offline.simulator.config import SimulationConfig
from offline.simulator.constants import (
    _CANCEL_MARGIN_S,
    _HOURLY,
    _NEVER,
    _PAGE_WEIGHTS,
    _ST_CANCEL,
    DAY_S,
    K_CANCELLATION,
    K_DOWNGRADE,
    K_UPGRADE,
)
from offline.simulator.plans import _PlanSteps
from offline.simulator.population import _draw_population
from offline.simulator.rows import _Rows, _run_rank
from offline.simulator.sessions import _SessionSteps
from offline.simulator.transactions import _TransactionSteps


def simulate(config: SimulationConfig) -> Iterator[Event]:
    """Generate every event of the simulation, in non-decreasing ``event_time`` order.

    Ties are broken by customer id, then by the customer's sequence number, so the order
    (and the canonical JSON of each event) is fully determined by ``config``. Events of a
    session that straddles the end of the period are stamped after ``config.end``.
    """
    return _Simulator(config).events()


class _Simulator(_SessionSteps, _PlanSteps, _TransactionSteps):
    """The day-by-day state machine behind :func:`simulate`. All times are epoch seconds.

    The session, plan-change and transaction steps of a day come from the mixins (see
    :mod:`offline.simulator.sessions`, :mod:`.plans` and :mod:`.transactions`).
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.pop = pop = _draw_population(config)
        n = config.customers
        self.start_s = int(config.start.timestamp())
        # A customer's ordinary sessions must end by this time (the churn for silent churners,
        # an hour before it for cancellers, whose final session is added separately).
        self.deadline = np.where(pop.cancels, pop.churn_s - _CANCEL_MARGIN_S, pop.churn_s)
        self.paid = pop.paid0.copy()
        self.busy_until = np.zeros(n, dtype=np.int64)
        self.session_count = np.zeros(n, dtype=np.int64)
        self.event_count = np.zeros(n, dtype=np.int64)
        self.order_count = np.zeros(n, dtype=np.int64)
        self.pending = np.where(pop.downgrade_day >= 0, K_DOWNGRADE, -1)
        self.pending_day = pop.downgrade_day.copy()
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 1])))
        first_bill = self.start_s + rng.integers(0, 30 * DAY_S, n)
        first_bill = np.where(pop.signup_s >= self.start_s, pop.signup_s, first_bill)
        self.next_bill = np.where(pop.paid0, first_bill, _NEVER).astype(np.int64)
        self.last_order = np.full(n, -1, dtype=np.int64)
        self.last_order_combo = np.full(n, -1, dtype=np.int64)
        self.last_order_s = np.full(n, -_NEVER, dtype=np.int64)
        self.refunded = np.zeros(n, dtype=bool)
        hourly = np.roll(_HOURLY, -config.start.hour)  # profile by hour since the day start
        self.hour_p = hourly / hourly.sum()
        page_cum = np.cumsum(np.array([_PAGE_WEIGHTS[False], _PAGE_WEIGHTS[True]]), axis=1)
        self.page_cum = page_cum / page_cum[:, -1:]

    # --- the day loop ---------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Every event, ordered by (event_time, customer, seq), one day at a time."""
        builders = _Builders(self.config, self.pop.ids)
        carry = _Rows.empty()
        for day in range(self.config.days):
            rows = _Rows.concat([carry, self._day(day)])
            rows = rows.take(np.lexsort((rows.seq, rows.c, rows.t)))
            cut = int(np.searchsorted(rows.t, self.start_s + (day + 1) * DAY_S))
            yield from builders.build(rows.take(slice(0, cut)))
            carry = rows.take(slice(cut, None))
        yield from builders.build(carry)  # the tails of sessions that straddle the end

    def _day(self, day: int) -> _Rows:
        """Every event generated for ``day`` (late sessions may spill past midnight)."""
        cfg, pop = self.config, self.pop
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([cfg.seed, 2, day])))
        day_s = self.start_s + day * DAY_S
        drift = cfg.drift_at is not None and day >= cfg.drift_at
        active = np.flatnonzero((pop.signup_s < day_s + DAY_S) & (pop.churn_s > day_s))
        m = np.ones(cfg.customers)
        m[active] = self._engagement(active, day_s + DAY_S // 2)

        sessions = self._draw_sessions(rng, day_s, active, m, drift)
        kept = self._place_sessions(rng, sessions)
        session_no = self._number_sessions(sessions, kept)
        changes = self._plan_changes(rng, day, sessions, kept, m)
        level = self._session_levels(sessions, kept, changes)
        cancel_c = sessions.c[sessions.stype == _ST_CANCEL]
        rows = _Rows.concat(
            [
                *self._session_rows(sessions, kept, session_no, level),
                _Rows.make(changes.t, changes.c, np.where(changes.upgrade, K_UPGRADE, K_DOWNGRADE)),
                _Rows.make(
                    pop.churn_s[cancel_c], cancel_c, K_CANCELLATION, i0=pop.reason[cancel_c]
                ),
                *self._transaction_rows(rng, day_s, drift, sessions, kept, m, changes),
            ]
        ).sorted_by_customer()
        rows.seq = self.event_count[rows.c] + _run_rank(rows.c)
        self.event_count += np.bincount(rows.c, minlength=cfg.customers)
        return rows

    def _engagement(self, customers: np.ndarray, at_s: int) -> np.ndarray:
        """Engagement multiplier at ``at_s``: 1, falling linearly to 0.25 over a decline."""
        decline = self.pop.decline_s[customers].astype(float)
        span = np.maximum(self.pop.churn_s[customers] - decline, 1.0)
        return 1.0 - 0.75 * np.clip((at_s - decline) / span, 0.0, 1.0)
