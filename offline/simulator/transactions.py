"""Transactions: each day's purchases (upgrades, monthly renewals, extras) and refunds."""

from __future__ import annotations

import numpy as np

from offline.simulator.config import SimulationConfig
from offline.simulator.constants import _NEVER, _ST_CANCEL, DAY_S, K_PURCHASE, K_REFUND
from offline.simulator.orders import _draw_combos
from offline.simulator.plans import _PlanChanges
from offline.simulator.population import _Population
from offline.simulator.rows import _Rows, _run_rank, _run_starts
from offline.simulator.sessions import _Sessions


class _TransactionSteps:
    """The transaction step of :class:`offline.simulator.engine._Simulator`'s day.

    A mixin: the annotations below are the part of the simulator's state it reads and writes.
    """

    config: SimulationConfig
    pop: _Population
    paid: np.ndarray  # bool: each customer's current plan level
    next_bill: np.ndarray  # time of each customer's next renewal, _NEVER if none
    order_count: np.ndarray  # orders numbered so far, per customer
    last_order: np.ndarray  # number of each customer's latest order, -1 if none
    last_order_combo: np.ndarray  # its combo (see :func:`_draw_combos`)
    last_order_s: np.ndarray  # its time
    refunded: np.ndarray  # bool: whether it was refunded

    def _transaction_rows(
        self,
        rng: np.random.Generator,
        day_s: int,
        drift: bool,
        s: _Sessions,
        kept: np.ndarray,
        m: np.ndarray,
        changes: _PlanChanges,
    ) -> list[_Rows]:
        """Purchases (upgrades, monthly renewals, extras) and refunds of the day.

        Renewals fall every 30 days from the first payment while the customer is paid and has
        not churned. Extras and refunds are made during the customer's first session of the
        day; a refund returns the customer's last order if it is under 14 days old.
        """
        pop, n = self.pop, self.config.customers
        day_end = day_s + DAY_S
        downgraded_at = np.full(n, _NEVER, dtype=np.int64)
        downgraded_at[changes.c[~changes.upgrade]] = changes.t[~changes.upgrade]
        billed = np.flatnonzero((self.next_bill < day_end) & (self.next_bill < pop.churn_s))
        billed = billed[self.next_bill[billed] < downgraded_at[billed]]
        bill_t = self.next_bill[billed]
        self.next_bill[billed] += 30 * DAY_S
        self.next_bill[changes.c[changes.upgrade]] = changes.t[changes.upgrade] + 30 * DAY_S
        self.next_bill[changes.c[~changes.upgrade]] = _NEVER

        ordinary = kept[s.stype[kept] != _ST_CANCEL]
        first = ordinary[_run_starts(s.c[ordinary])]
        fc = s.c[first]
        when = s.start[first] + rng.integers(1, np.maximum(s.duration[first], 2))
        paid_boost = np.where(self.paid[fc], 1.3, 1.0)
        extra = rng.random(len(first)) < 0.004 * (0.5 + 0.5 * m[fc]) * paid_boost
        combo = _draw_combos(rng, len(first))
        recent = (self.last_order_s[fc] >= day_s - 14 * DAY_S) & (self.last_order_s[fc] < day_s)
        refundable = (self.last_order[fc] >= 0) & ~self.refunded[fc] & recent
        refund_p = 0.01 * (1.0 + 6.0 * (1.0 - m[fc])) * (1.5 if drift else 1.0)
        refund = refundable & (rng.random(len(first)) < refund_p)

        upgrades = changes.upgrade
        purchases = _Rows.concat(
            [
                _Rows.make(changes.t[upgrades], changes.c[upgrades], K_PURCHASE),
                _Rows.make(bill_t, billed, K_PURCHASE),
                _Rows.make(when[extra], fc[extra], K_PURCHASE, i0=combo[extra]),
            ]
        ).sorted_by_customer()
        purchases.sn = self.order_count[purchases.c] + _run_rank(purchases.c)
        self.order_count += np.bincount(purchases.c, minlength=n)

        rc = fc[refund]
        refunds = _Rows.make(
            when[refund], rc, K_REFUND, sn=self.last_order[rc], i0=self.last_order_combo[rc]
        )
        self.refunded[rc] = True
        last = np.r_[purchases.c[1:] != purchases.c[:-1], True][: len(purchases)]
        lc = purchases.c[last]
        self.last_order[lc] = purchases.sn[last]
        self.last_order_combo[lc] = purchases.i0[last]
        self.last_order_s[lc] = purchases.t[last]
        self.refunded[lc] = False
        return [purchases, refunds]
