"""Plan changes: upgrades and downgrades of the day, and the plan level (free or paid) in
force at each session's start."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline.simulator.config import SimulationConfig
from offline.simulator.constants import _ST_CANCEL, K_DOWNGRADE, K_UPGRADE
from offline.simulator.population import _Population
from offline.simulator.rows import _run_rank, _run_starts
from offline.simulator.sessions import _Sessions


@dataclass
class _PlanChanges:
    """Upgrades and downgrades of one day (at the end of the customer's first session)."""

    c: np.ndarray
    t: np.ndarray
    upgrade: np.ndarray  # bool: True upgrade, False downgrade


class _PlanSteps:
    """The plan-change steps of :class:`offline.simulator.engine._Simulator`'s day.

    A mixin: the annotations below are the part of the simulator's state these steps read
    and write.
    """

    config: SimulationConfig
    pop: _Population
    paid: np.ndarray  # bool: each customer's current plan level
    pending: np.ndarray  # planned change (K_UPGRADE or K_DOWNGRADE), -1 if none
    pending_day: np.ndarray  # day from which the planned change is due

    def _plan_changes(
        self, rng: np.random.Generator, day: int, s: _Sessions, kept: np.ndarray, m: np.ndarray
    ) -> _PlanChanges:
        """Upgrades and downgrades, made at the end of the customer's first session of the day.

        Steady free customers upgrade with a small daily hazard, paid ones rarely downgrade;
        some paid churners downgrade during their decline (planned in the population).
        """
        cfg, pop = self.config, self.pop
        ordinary = kept[s.stype[kept] != _ST_CANCEL]
        first = ordinary[_run_starts(s.c[ordinary])]
        fc = s.c[first]
        draw = rng.random(len(first))
        upgrade_p = 0.004 * np.sqrt(pop.engagement[fc] / cfg.sessions_per_day)
        wants_up = ~self.paid[fc] & (m[fc] >= 1.0) & (draw < upgrade_p)
        wants_down = self.paid[fc] & (draw < 0.0007)
        idle = self.pending[fc] < 0
        self.pending[fc[idle & wants_up]] = K_UPGRADE
        self.pending[fc[idle & wants_down]] = K_DOWNGRADE
        self.pending_day[fc[idle & (wants_up | wants_down)]] = day

        due = (self.pending[fc] >= 0) & (self.pending_day[fc] <= day)
        up = due & (self.pending[fc] == K_UPGRADE) & ~self.paid[fc]
        down = due & (self.pending[fc] == K_DOWNGRADE) & self.paid[fc]
        self.pending[fc[due]] = -1
        change = first[up | down]
        return _PlanChanges(
            c=s.c[change],
            t=s.start[change] + s.duration[change] - 1,
            upgrade=~self.paid[s.c[change]],
        )

    def _session_levels(self, s: _Sessions, kept: np.ndarray, changes: _PlanChanges) -> np.ndarray:
        """Plan level (1 paid, 0 free) at each session's start; applies today's changes."""
        level = self.paid[s.c].astype(np.int64)
        changed = np.zeros(self.config.customers, dtype=bool)
        changed[changes.c] = True
        after_change = np.zeros(len(s.c), dtype=bool)
        after_change[kept[_run_rank(s.c[kept]) > 0]] = True
        self.paid[changes.c] = changes.upgrade
        return np.where(after_change & changed[s.c], 1 - level, level)
