"""Sessions: each day's candidate sessions and their items (plays, pages, reactions...),
where they are placed in time, how they are numbered and the rows they become."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline.simulator.config import SimulationConfig
from offline.simulator.constants import (
    _CANCEL_PAGE,
    _ERRORS,
    _HELP_TOPICS,
    _ITEM_KINDS,
    _N_SONGS,
    _SESSION_GAP_S,
    _SETTINGS_PAGE,
    _ST_CANCEL,
    _ST_RANDOM,
    _ST_SIGNUP,
    DAY_S,
    K_ADD_FRIEND,
    K_ERROR,
    K_HELP,
    K_PAGE_VIEW,
    K_PLAY,
    K_SESSION_END,
    K_SESSION_START,
    _utc,
)
from offline.simulator.population import _Population
from offline.simulator.rows import _exclusive_cumsum, _Rows, _run_ids, _run_rank


@dataclass
class _Sessions:
    """One day's candidate sessions (index = session) and their items (index = item)."""

    c: np.ndarray  # customer index
    stype: np.ndarray  # _ST_RANDOM, _ST_SIGNUP or _ST_CANCEL
    start: np.ndarray  # epoch seconds, final once placed
    duration: np.ndarray  # whole seconds
    first_item: np.ndarray  # index of the session's first item
    item_session: np.ndarray  # session of each item
    item_cat: np.ndarray  # 0..7 = kind - K_PAGE_VIEW
    item_offset: np.ndarray  # seconds after the session start
    item_i0: np.ndarray  # song, friend, help topic or error (pages are chosen later)
    item_i1: np.ndarray  # playlist number
    item_f0: np.ndarray  # seconds played
    item_page_u: np.ndarray  # uniform draw that picks the page once the level is known


class _SessionSteps:
    """The session steps of :class:`offline.simulator.engine._Simulator`'s day.

    A mixin: the annotations below are the part of the simulator's state these steps read
    and write (``busy_until`` and ``session_count`` carry over from day to day).
    """

    config: SimulationConfig
    pop: _Population
    start_s: int  # start of day 0
    deadline: np.ndarray  # a customer's ordinary sessions must end by this time
    busy_until: np.ndarray  # end of each customer's latest session so far
    session_count: np.ndarray  # sessions numbered so far, per customer
    hour_p: np.ndarray  # probability of a session start per hour since the day start
    page_cum: np.ndarray  # cumulative page probabilities by plan level (free, paid)

    def _draw_sessions(
        self, rng: np.random.Generator, day_s: int, active: np.ndarray, m: np.ndarray, drift: bool
    ) -> _Sessions:
        """Candidate sessions: random ones, sign-up sessions and cancellers' final sessions."""
        cfg, pop = self.config, self.pop
        weekend = _utc(day_s + DAY_S // 2).weekday() >= 5
        rate = pop.engagement[active] * m[active] * (1.15 if weekend else 0.95)
        rate *= rng.gamma(4.0, 0.25, len(active)) * (cfg.drift_sessions if drift else 1.0)
        random_c = np.repeat(active, rng.poisson(rate))
        hours = rng.choice(24, size=len(random_c), p=self.hour_p)
        random_start = day_s + hours * 3600 + rng.integers(0, 3600, len(random_c))
        signup = pop.signup_s[active]
        signup_c = active[(signup >= day_s) & (signup < day_s + DAY_S)]
        churning = active[pop.churn_s[active] < day_s + DAY_S]
        cancel_c = churning[pop.cancels[churning]]

        c = np.concatenate([random_c, signup_c, cancel_c]).astype(np.int64)
        counts = [len(random_c), len(signup_c), len(cancel_c)]
        stype = np.repeat(np.array([_ST_RANDOM, _ST_SIGNUP, _ST_CANCEL]), counts)
        start = np.concatenate([random_start, pop.signup_s[signup_c], np.zeros(len(cancel_c))])
        return self._draw_items(rng, c, stype, start.astype(np.int64), m[c], drift)

    def _draw_items(
        self,
        rng: np.random.Generator,
        c: np.ndarray,
        stype: np.ndarray,
        start: np.ndarray,
        m: np.ndarray,
        drift: bool,
    ) -> _Sessions:
        """Each session's items (kind, values, offset from the start) and its duration.

        A play lasts as long as the part of the song that was played (whole song unless
        skipped); other items take 1 s plus an exponential pause (mean 12 s, at most 300 s).
        A canceller's final session is two page views (settings, cancel).
        """
        cfg, pop = self.config, self.pop
        cancel = stype == _ST_CANCEL
        mean_items = pop.items_mu[c] * (0.5 + 0.5 * m) * (cfg.drift_items if drift else 1.0)
        n_items = 1 + rng.poisson(np.maximum(mean_items - 1.0, 0.0))
        n_items[cancel] = 2
        item_session = np.repeat(np.arange(len(c)), n_items)
        first_item = np.cumsum(n_items) - n_items
        n = len(item_session)

        weights = self._item_weights(c, m, drift)
        weights[cancel] = np.eye(_ITEM_KINDS)[0]  # page views only
        cum = np.cumsum(weights, axis=1)
        cum /= cum[:, -1:]
        cat = (rng.random(n)[:, None] > cum[item_session]).sum(axis=1)
        is_play = cat == K_PLAY - K_PAGE_VIEW

        song = (_N_SONGS * rng.random(n) ** 2).astype(np.int64)  # a few songs are popular
        length = pop.song_seconds[song]
        skip = rng.random(n) < (0.12 + 0.3 * (1.0 - m))[item_session]
        played = np.round(np.where(skip, length * rng.uniform(0.05, 0.6, n), length), 1)
        pause = 1 + np.minimum(np.floor(rng.exponential(12.0, n)), 300.0).astype(np.int64)
        step = np.where(is_play, np.ceil(played).astype(np.int64) + rng.integers(0, 3, n), pause)
        lead = 1 + rng.integers(0, 10, len(c))
        offset = lead[item_session] + _exclusive_cumsum(step, item_session)
        total = np.bincount(item_session, weights=step, minlength=len(c)).astype(np.int64)
        duration = lead + total + 1  # the last item is at least 2 s before the end

        # Reactions and playlist additions refer to the song last played in the session.
        index = np.arange(n)
        last_play = np.maximum.accumulate(np.where(is_play, index, -1)) if n else index
        current = np.where(last_play >= first_item[item_session], song[last_play], song)
        i0 = np.where(is_play, song, current)
        others = max(cfg.customers - 1, 1)
        friend = (c[item_session] + 1 + rng.integers(0, others, n)) % cfg.customers
        i0 = np.where(cat == K_ADD_FRIEND - K_PAGE_VIEW, friend, i0)
        i0 = np.where(cat == K_HELP - K_PAGE_VIEW, rng.integers(0, len(_HELP_TOPICS), n), i0)
        i0 = np.where(cat == K_ERROR - K_PAGE_VIEW, rng.integers(0, len(_ERRORS), n), i0)
        return _Sessions(
            c=c,
            stype=stype,
            start=start,
            duration=duration,
            first_item=first_item,
            item_session=item_session,
            item_cat=cat,
            item_offset=offset,
            item_i0=i0,
            item_i1=rng.integers(0, 5, n),
            item_f0=np.where(is_play, played, 0.0),
            item_page_u=rng.random(n),
        )

    def _item_weights(self, c: np.ndarray, m: np.ndarray, drift: bool) -> np.ndarray:
        """Relative weights of the 8 item kinds (page view, play, like, dislike, add friend,
        add to playlist, help, error) per session; a decline shifts them to unhappy kinds."""
        cfg, pop = self.config, self.pop
        unhappy = 1.0 - m
        ones = np.ones(len(c))
        plays = cfg.drift_plays if drift else 1.0
        errors = cfg.drift_errors if drift else 1.0
        return np.column_stack(
            [
                0.12 * ones,
                0.70 * plays * ones,
                0.055 * (0.4 + 0.6 * m) / np.sqrt(pop.taste[c]),
                0.011 * pop.taste[c] * (1.0 + 2.5 * unhappy),
                0.014 * pop.social[c] * (0.3 + 0.7 * m),
                0.025 * pop.social[c] * (0.3 + 0.7 * m),
                0.008 * np.sqrt(pop.error_prone[c]) * (1.0 + 3.0 * unhappy) * (1.5 if drift else 1),
                0.005 * pop.error_prone[c] * (1.0 + 2.0 * unhappy) * errors,
            ]
        )

    def _place_sessions(self, rng: np.random.Generator, s: _Sessions) -> np.ndarray:
        """Fix start times; return the kept sessions' indexes ordered by (customer, start).

        A customer's ordinary sessions are pushed later where needed so that they never
        overlap (nor overlap the previous day's last one), and dropped if they would end
        after the customer's deadline. Random sessions before a sign-up are dropped. A
        canceller's final session ends one second before the churn time.
        """
        pop = self.pop
        ordinary = np.flatnonzero(
            (s.stype == _ST_SIGNUP) | ((s.stype == _ST_RANDOM) & (s.start > pop.signup_s[s.c]))
        )
        ordinary = ordinary[np.lexsort((s.stype[ordinary], s.start[ordinary], s.c[ordinary]))]
        c, duration = s.c[ordinary], s.duration[ordinary]
        # Wanted: start'[k] = max(start[k], start'[k-1] + step[k-1]), start'[0] >= lower.
        # Closed form: before[k] + max(lower, running max of start[j] - before[j]).
        step = duration + _SESSION_GAP_S + rng.integers(0, 600, len(ordinary))
        run = _run_ids(c)
        before = _exclusive_cumsum(step, run)
        spacing = 10**10  # more than any spread of (start - before) within one customer-day
        shifted = s.start[ordinary] - before - self.start_s + run * spacing
        running_max = np.maximum.accumulate(shifted) - run * spacing + self.start_s
        start = before + np.maximum(running_max, self.busy_until[c] + _SESSION_GAP_S)
        s.start[ordinary] = start
        ordinary = ordinary[start + duration <= self.deadline[c]]

        final = np.flatnonzero(s.stype == _ST_CANCEL)
        s.start[final] = pop.churn_s[s.c[final]] - 1 - s.duration[final]
        kept = np.concatenate([ordinary, final])
        kept = kept[np.lexsort((s.start[kept], s.c[kept]))]
        np.maximum.at(self.busy_until, s.c[kept], s.start[kept] + s.duration[kept])
        return kept

    def _number_sessions(self, s: _Sessions, kept: np.ndarray) -> np.ndarray:
        """Per-customer session numbers of the kept sessions (-1 for dropped ones)."""
        c = s.c[kept]
        number = np.full(len(s.c), -1, dtype=np.int64)
        number[kept] = self.session_count[c] + _run_rank(c)
        self.session_count += np.bincount(c, minlength=self.config.customers)
        return number

    def _session_rows(
        self, s: _Sessions, kept: np.ndarray, number: np.ndarray, level: np.ndarray
    ) -> list[_Rows]:
        """session_start, item and session_end rows of the kept sessions."""
        c = s.c[kept]
        start_rows = _Rows.make(
            s.start[kept],
            c,
            K_SESSION_START,
            sn=number[kept],
            i0=level[kept],
            i1=self.pop.device[c],
        )
        end_rows = _Rows.make(
            s.start[kept] + s.duration[kept],
            c,
            K_SESSION_END,
            sn=number[kept],
            f0=s.duration[kept].astype(np.float64),
        )
        items = np.flatnonzero(number[s.item_session] >= 0)
        session = s.item_session[items]
        page = (s.item_page_u[items, None] > self.page_cum[level[session]]).sum(axis=1)
        final = s.stype[session] == _ST_CANCEL
        first = items == s.first_item[session]
        page = np.where(final, np.where(first, _SETTINGS_PAGE, _CANCEL_PAGE), page)
        cat = s.item_cat[items]
        item_rows = _Rows.make(
            s.start[session] + s.item_offset[items],
            s.c[session],
            K_PAGE_VIEW + cat,
            sn=number[session],
            i0=np.where(cat == 0, page, s.item_i0[items]),
            i1=s.item_i1[items],
            f0=s.item_f0[items],
        )
        return [start_rows, item_rows, end_rows]
