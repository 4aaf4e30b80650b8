"""A deterministic simulator of a music-streaming service whose customers churn.

It is the project's embedded default data: the demo, the tests and the benchmarks replay
its events, and its ground truth (who really churned, when, and with which probability)
lets the model and the drift monitors be checked against reality.

The model, loosely after the Sparkify data set:

* Each customer has latent traits: engagement (sessions per day, lognormal), songs per
  session, taste mismatch (drives dislikes), error-proneness (device / network quality),
  sociability (friends, playlists), a plan level (free or paid) and a tenure (most signed up
  before the start, some sign up during the simulated period).
* The probability of churning within the period is a logistic function of those traits plus
  noise, scaled by how long the customer is exposed; the outcome is drawn from it. A churner's
  engagement decays over the 2-5 weeks before the churn time (fewer and shorter sessions,
  fewer plays and likes, more skips, dislikes, help and error pages, maybe a downgrade);
  most then cancel (a last session visits the settings and cancel pages, then a
  ``cancellation`` event marks the churn time), some just go silent. Nothing is emitted
  for a customer after their churn time.
* Paid customers pay a monthly subscription (a ``purchase`` of 9.99 GBP every 30 days);
  anyone may buy extras; unhappy customers are more likely to ask for a ``refund``.
* With ``drift_at`` set, a product change hits everybody from that day on: fewer and shorter
  sessions, ~40 % fewer plays per day, three times the error rate, and an extra churn risk
  that falls mostly on error-prone and free customers.

Times are whole seconds, UTC. Days are counted from ``SimulationConfig.start``: day ``d``
covers ``[start + d days, start + (d + 1) days)``. The simulation runs day by day (memory
is bounded by one day's events) and is vectorised with numpy per day; the same config
always gives the same events, byte for byte.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

import numpy as np

from core.events import (
    AddFriend,
    AddFriendPayload,
    AddToPlaylist,
    AddToPlaylistPayload,
    Cancellation,
    CancellationPayload,
    Dislike,
    Downgrade,
    Error,
    ErrorPayload,
    Event,
    Help,
    HelpPayload,
    ItemReactionPayload,
    Like,
    LineItem,
    PageView,
    PageViewPayload,
    PlanChangePayload,
    Play,
    PlayPayload,
    Purchase,
    PurchasePayload,
    Refund,
    RefundPayload,
    SessionEnd,
    SessionEndPayload,
    SessionStart,
    SessionStartPayload,
    Upgrade,
    encode_event,
)

__all__ = [
    "CustomerTruth",
    "SimulationConfig",
    "customer_id",
    "ground_truth",
    "read_truth",
    "simulate",
    "write_jsonl",
    "write_truth",
]

DAY_S = 86_400
_NEVER = 2**62  # an epoch-seconds value meaning "never"
_REFERENCE_DAYS = 60.0  # churn probabilities of the traits are per 60 days of exposure
_MIN_TENURE_DAYS = 2  # a customer cannot churn before this many days after signing up
_CANCEL_MARGIN_S = 3_600  # a canceller's ordinary sessions end this long before the churn time
_SESSION_GAP_S = 60  # minimum pause between two sessions of one customer
_N_SONGS = 20_000

# --- Catalogues (indexes are what the numpy code draws) ------------------------------------

_PAGES = ("home", "settings", "about", "logout", "roll_advert", "upgrade", "downgrade", "cancel")
_PAGE_WEIGHTS = {  # by plan level: free, paid
    False: (0.45, 0.06, 0.04, 0.12, 0.25, 0.08, 0.0, 0.0),
    True: (0.60, 0.10, 0.06, 0.16, 0.0, 0.0, 0.08, 0.0),
}
_SETTINGS_PAGE, _CANCEL_PAGE = _PAGES.index("settings"), _PAGES.index("cancel")
_DEVICES = ("web", "ios", "android", "desktop")
_HELP_TOPICS = ("playback", "billing", "account", "offline-mode", "cancel-subscription")
_ERRORS = (
    (404, "page not found"),
    (500, "internal server error"),
    (502, "bad gateway"),
    (503, "service unavailable"),
    (504, "playback timed out"),
)
_REASONS = ("too expensive", "not using it enough", "technical problems", "moved to a competitor")
_TECHNICAL_REASON = _REASONS.index("technical problems")
_SUBSCRIPTION = ("premium-monthly", 9.99, "Premium subscription, one month")
_EXTRAS = (
    ("gift-card-10", 10.0, "Gift card"),
    ("hifi-addon", 2.99, "Hi-fi audio add-on, one month"),
    ("lossless-pack", 4.99, "Lossless album pack"),
    ("merch-tshirt", 19.99, "T-shirt"),
    ("concert-ticket", 45.0, "Concert ticket"),
)
# Diurnal profile: relative session starts per UTC hour (0-23).
_HOURLY = np.array(
    [0.6, 0.4, 0.3, 0.25, 0.25, 0.3, 0.5, 0.9, 1.2, 1.3, 1.3, 1.3,
     1.4, 1.4, 1.3, 1.3, 1.4, 1.6, 1.9, 2.1, 2.1, 1.8, 1.4, 1.0]
)  # fmt: skip

# Event kinds of the per-day row tables. Session items are kinds 2..9 in this order.
(
    K_SESSION_START,
    K_SESSION_END,
    K_PAGE_VIEW,
    K_PLAY,
    K_LIKE,
    K_DISLIKE,
    K_ADD_FRIEND,
    K_ADD_TO_PLAYLIST,
    K_HELP,
    K_ERROR,
    K_UPGRADE,
    K_DOWNGRADE,
    K_CANCELLATION,
    K_PURCHASE,
    K_REFUND,
) = range(15)
_ITEM_KINDS = 8
_ST_RANDOM, _ST_SIGNUP, _ST_CANCEL = 0, 1, 2  # session types


# --- Configuration and ground truth --------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are per customer; times are UTC; days count from ``start``.

    ``drift_at`` is the index of the first day (0-based) on which the product change is in
    force, or ``None`` for no drift. The remaining knobs have sensible defaults; all of them
    are part of the config, so changing one changes the output.
    """

    customers: int = 1000
    days: int = 60
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    seed: int = 42
    drift_at: int | None = None
    new_customer_share: float = 0.3
    """Share of customers who sign up during the period (the others signed up before)."""
    paid_share: float = 0.45
    """Share of existing customers on the paid plan (new ones start mostly free)."""
    sessions_per_day: float = 0.55
    """Median over customers of the mean number of sessions per day."""
    items_per_session: float = 11.0
    """Median over customers of the mean number of items (plays, pages...) per session."""
    churn_rate: float = 0.28
    """Target share of fully exposed customers who churn within 60 days (no drift)."""
    cancel_share: float = 0.8
    """Share of churners who emit a ``cancellation``; the others just go silent."""
    subscription_price: float = 9.99
    """Monthly subscription price, GBP."""
    drift_sessions: float = 0.9
    """Factor on sessions per day from the drift day on."""
    drift_items: float = 0.75
    """Factor on items per session from the drift day on."""
    drift_plays: float = 0.75
    """Factor on the weight of plays among session items from the drift day on."""
    drift_errors: float = 3.0
    """Factor on the error-page rate from the drift day on."""
    drift_churn_rate: float = 0.12
    """Extra share of customers, exposed for 60 days after the drift, who churn because of it."""

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be a time-zone-aware datetime")
        start = self.start.astimezone(UTC).replace(microsecond=0)
        object.__setattr__(self, "start", start)
        if self.drift_at is not None and not 0 <= self.drift_at < self.days:
            raise ValueError(f"drift_at must be a day index in [0, {self.days})")
        for name in ("new_customer_share", "paid_share", "cancel_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 < self.churn_rate < 1.0 or not 0.0 <= self.drift_churn_rate < 1.0:
            raise ValueError("churn_rate must be in (0, 1) and drift_churn_rate in [0, 1)")

    @property
    def end(self) -> datetime:
        """End of the simulated period (exclusive), UTC."""
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True)
class CustomerTruth:
    """What really happened to one customer (the simulator's answer key).

    ``churn_probability`` is the probability with which ``churned`` was drawn: that of
    churning within the simulated period. ``churn_time`` (UTC) is the cancellation time, or
    for a silent churner the moment after which they are never seen again; no event of the
    customer is later than it. ``decline_start`` is when a churner's engagement began to
    decay. ``churn_cause`` is ``"baseline"`` or ``"drift"`` for churners, else ``None``.
    """

    customer_id: str
    churn_probability: float
    churned: bool
    churn_time: datetime | None
    cancelled: bool
    churn_cause: Literal["baseline", "drift"] | None
    signup_time: datetime
    initial_level: Literal["free", "paid"]
    sessions_per_day: float
    decline_start: datetime | None


def customer_id(index: int, customers: int) -> str:
    """The id of the customer at 0-based ``index``: ``C00001`` ... (wider past 99999).

    >>> customer_id(0, 1000), customer_id(99_999, 200_000)
    ('C00001', 'C100000')
    """
    width = max(5, len(str(customers)))
    return f"C{index + 1:0{width}d}"


# --- Population: traits, churn outcome and timing -----------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept(logits: np.ndarray, mean: float) -> float:
    """The ``b`` for which ``sigmoid(b + logits)`` averages ``mean`` (bisection)."""
    if mean <= 0.0:
        return -50.0
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (middle, high) if _sigmoid(middle + logits).mean() < mean else (low, middle)
    return (low + high) / 2.0


def _exposure_probability(p_reference: np.ndarray, exposure_days: np.ndarray) -> np.ndarray:
    """Probability over ``exposure_days`` given ``p_reference`` per 60 days (constant hazard)."""
    return 1.0 - (1.0 - p_reference) ** (np.maximum(exposure_days, 0.0) / _REFERENCE_DAYS)


@dataclass
class _Population:
    """Per-customer arrays (index = customer). Times are epoch seconds (UTC)."""

    ids: list[str]
    signup_s: np.ndarray
    paid0: np.ndarray
    engagement: np.ndarray  # mean sessions per day
    items_mu: np.ndarray  # mean items per session
    taste: np.ndarray  # dislike multiplier (taste mismatch)
    error_prone: np.ndarray  # error-page multiplier
    social: np.ndarray  # friend / playlist multiplier
    device: np.ndarray
    p_total: np.ndarray
    churned: np.ndarray
    drift_cause: np.ndarray
    cancels: np.ndarray
    churn_s: np.ndarray  # _NEVER for non-churners
    decline_s: np.ndarray  # _NEVER for non-churners
    downgrade_day: np.ndarray  # planned downgrade day of paid churners, -1 if none
    reason: np.ndarray
    song_seconds: np.ndarray  # length of each catalogue song


def _draw_population(config: SimulationConfig) -> _Population:
    """Draw every customer's traits and fate. Every draw is unconditional, so the same seed
    gives the same customers whatever ``drift_at`` is (only the drift churners differ)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 0])))
    n, days = config.customers, config.days
    start_s = int(config.start.timestamp())

    is_new = rng.random(n) < config.new_customer_share
    tenure_days = np.clip(rng.lognormal(math.log(240.0), 0.8, n), 3.0, 3000.0)
    new_day = rng.integers(0, days, n)
    new_tod = rng.integers(7 * 3600, 23 * 3600, n)
    signup_s = np.where(
        is_new,
        start_s + new_day * DAY_S + new_tod,
        start_s - (tenure_days * DAY_S).astype(np.int64),
    ).astype(np.int64)
    signup_day = np.floor_divide(signup_s - start_s, DAY_S)

    z_eng, z_items = rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)
    z_taste, z_err, z_social = (rng.normal(0.0, 1.0, n) for _ in range(3))
    engagement = config.sessions_per_day * np.exp(0.6 * z_eng)
    items_mu = config.items_per_session * np.exp(0.3 * z_items)
    taste, error_prone, social = np.exp(0.5 * z_taste), np.exp(0.6 * z_err), np.exp(0.6 * z_social)
    paid_logit = 0.8 * z_eng
    paid_existing = _sigmoid(_intercept(paid_logit[~is_new], config.paid_share) + paid_logit)
    p_paid = np.where(is_new, 0.15, paid_existing)
    paid0 = rng.random(n) < p_paid
    device = rng.integers(0, len(_DEVICES), n)
    noise = rng.normal(0.0, 0.5, n)

    young = (is_new | (tenure_days < 45)).astype(float)
    behaviour = -0.9 * z_eng + 0.6 * z_taste + 0.45 * z_err - 0.45 * z_social
    behaviour = behaviour - 0.35 * paid0 + 0.6 * young + noise
    p_ref = _sigmoid(_intercept(behaviour, config.churn_rate) + behaviour)
    first_day = np.maximum(signup_day + _MIN_TENURE_DAYS, 0)
    p_base = _exposure_probability(p_ref, (days - first_day).astype(float))

    drift_logit = 1.0 * z_err + 0.5 * (~paid0) - 0.3 * z_eng
    q_ref = _sigmoid(_intercept(drift_logit, config.drift_churn_rate) + drift_logit)
    if config.drift_at is None:
        drift_first = np.full(n, days)
        p_drift = np.zeros(n)
    else:
        drift_first = np.maximum(config.drift_at + 7, first_day)
        p_drift = _exposure_probability(q_ref, (days - drift_first).astype(float))
    p_total = p_base + (1.0 - p_base) * p_drift

    u_outcome, u_day = rng.random(n), rng.random(n)
    churn_tod = rng.integers(8 * 3600, 23 * 3600, n)
    decline_days = rng.uniform(14.0, 35.0, n)
    cancels_draw = rng.random(n) < config.cancel_share
    downgrade_draw, u_down = rng.random(n) < 0.5, rng.random(n)
    reason = rng.integers(0, len(_REASONS), n)
    technical = rng.random(n) < 0.6
    song_seconds = np.clip(rng.lognormal(math.log(225.0), 0.3, _N_SONGS), 30.0, 900.0)

    churned = u_outcome < p_total
    drift_cause = churned & (u_outcome >= p_base)
    lo = np.where(drift_cause, drift_first, first_day)
    churn_day = lo + np.floor(u_day * np.maximum(days - lo, 0)).astype(np.int64)
    churn_s = np.where(churned, start_s + churn_day * DAY_S + churn_tod, _NEVER).astype(np.int64)
    decline_s = churn_s - (decline_days * DAY_S).astype(np.int64)
    drift_start_s = start_s + (config.drift_at or 0) * DAY_S
    decline_s = np.maximum(decline_s, np.where(drift_cause, drift_start_s, signup_s))
    decline_s = np.where(churned, decline_s, _NEVER)
    decline_day = np.floor_divide(decline_s - start_s, DAY_S)
    down_day = decline_day + np.floor(u_down * (churn_day - decline_day)).astype(np.int64)
    downgrade_day = np.where(churned & paid0 & downgrade_draw, np.maximum(down_day, 0), -1)
    reason = np.where(drift_cause & technical, _TECHNICAL_REASON, reason)

    return _Population(
        ids=[customer_id(i, n) for i in range(n)],
        signup_s=signup_s,
        paid0=paid0,
        engagement=engagement,
        items_mu=items_mu,
        taste=taste,
        error_prone=error_prone,
        social=social,
        device=device,
        p_total=p_total,
        churned=churned,
        drift_cause=drift_cause,
        cancels=churned & cancels_draw,
        churn_s=churn_s,
        decline_s=decline_s,
        downgrade_day=downgrade_day,
        reason=reason,
        song_seconds=song_seconds,
    )


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def ground_truth(config: SimulationConfig) -> list[CustomerTruth]:
    """The answer key of ``simulate(config)``, one entry per customer in id order.

    Cheap: it draws the population only, without generating any event.
    """
    pop = _draw_population(config)
    truths = []
    for i, cid in enumerate(pop.ids):
        churned = bool(pop.churned[i])
        truths.append(
            CustomerTruth(
                customer_id=cid,
                churn_probability=round(float(pop.p_total[i]), 6),
                churned=churned,
                churn_time=_utc(int(pop.churn_s[i])) if churned else None,
                cancelled=bool(pop.cancels[i]),
                churn_cause=("drift" if pop.drift_cause[i] else "baseline") if churned else None,
                signup_time=_utc(int(pop.signup_s[i])),
                initial_level="paid" if pop.paid0[i] else "free",
                sessions_per_day=round(float(pop.engagement[i]), 6),
                decline_start=_utc(int(pop.decline_s[i])) if churned else None,
            )
        )
    return truths


# --- Per-day row tables --------------------------------------------------------------------


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


@dataclass
class _PlanChanges:
    """Upgrades and downgrades of one day (at the end of the customer's first session)."""

    c: np.ndarray
    t: np.ndarray
    upgrade: np.ndarray  # bool: True upgrade, False downgrade


class _Simulator:
    """The day-by-day state machine behind :func:`simulate`. All times are epoch seconds."""

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

    # --- sessions -------------------------------------------------------------------------

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

    # --- transactions ---------------------------------------------------------------------

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


# --- Orders --------------------------------------------------------------------------------

_N_EXTRAS = len(_EXTRAS)


def _draw_combos(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random extras orders, encoded as ``(first * 2 + quantity - 1) * 6 + second + 1``."""
    first = rng.integers(0, _N_EXTRAS, size)
    quantity = 1 + (rng.random(size) < 0.2)
    second = np.where(rng.random(size) < 0.3, rng.integers(0, _N_EXTRAS, size), -1)
    return (first * 2 + quantity - 1) * (_N_EXTRAS + 1) + second + 1


def _order_lines(combo: int, subscription_price: float) -> list[LineItem]:
    """The lines of an order: ``combo`` -1 is the monthly subscription, else extras."""
    if combo < 0:
        sku, _, description = _SUBSCRIPTION
        return [
            LineItem(sku=sku, quantity=1, unit_price=subscription_price, description=description)
        ]
    rest, second = divmod(combo, _N_EXTRAS + 1)
    first, quantity = divmod(rest, 2)
    lines = []
    for index, qty in ((first, quantity + 1), (second - 1, 1)):
        if index >= 0:
            sku, price, description = _EXTRAS[index]
            lines.append(LineItem(sku=sku, quantity=qty, unit_price=price, description=description))
    return lines


def _order_totals(lines: list[LineItem]) -> tuple[float, int]:
    """The amount (GBP, rounded to pence) and the number of items of an order."""
    amount = round(sum(line.quantity * line.unit_price for line in lines), 2)
    return amount, sum(line.quantity for line in lines)


# --- Events --------------------------------------------------------------------------------


_Values = tuple[int, int, int, float]  # (sn, i0, i1, f0) of a row


class _Builders:
    """Turns row tables into :mod:`core.events` objects: the only per-event Python code.

    Ids: event ``sim{seed}-{customer}-{seq}``, session ``{customer}-s{n}``, order
    ``{customer}-o{n}``, refund ``{customer}-r{n}`` (of order n), playlist
    ``{customer}-pl{n}``, song ``song-{n}``; customers are ``C00001``...
    """

    def __init__(self, config: SimulationConfig, ids: list[str]) -> None:
        self.prefix = f"sim{config.seed}-"
        self.ids = ids
        self.price = config.subscription_price
        self.songs = [f"song-{i}" for i in range(_N_SONGS)]
        self.table: list[Callable[[str, str, datetime, _Values], Event]] = [
            self.session_start,
            self.session_end,
            self.page_view,
            self.play,
            self.like,
            self.dislike,
            self.add_friend,
            self.add_to_playlist,
            self.help,
            self.error,
            self.upgrade,
            self.downgrade,
            self.cancellation,
            self.purchase,
            self.refund,
        ]

    def build(self, rows: _Rows) -> Iterator[Event]:
        ids, table, prefix, utc = self.ids, self.table, self.prefix, UTC
        from_timestamp = datetime.fromtimestamp
        tail = (rows.sn.tolist(), rows.i0.tolist(), rows.i1.tolist(), rows.f0.tolist())
        head = (rows.t.tolist(), rows.c.tolist(), rows.kind.tolist(), rows.seq.tolist())
        for t, c, kind, seq, v in zip(*head, zip(*tail, strict=True), strict=True):
            cid = ids[c]
            yield table[kind](f"{prefix}{cid}-{seq}", cid, from_timestamp(t, utc), v)

    # Each builder takes (event_id, customer_id, event_time, (sn, i0, i1, f0)).

    def session_start(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, paid, device, _ = v
        payload = SessionStartPayload(
            session_id=f"{c}-s{sn}", level="paid" if paid else "free", device=_DEVICES[device]
        )
        return SessionStart(event_id=e, customer_id=c, event_time=t, payload=payload)

    def session_end(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = SessionEndPayload(session_id=f"{c}-s{v[0]}", duration_s=v[3])
        return SessionEnd(event_id=e, customer_id=c, event_time=t, payload=payload)

    def page_view(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PageViewPayload(page=_PAGES[v[1]], session_id=f"{c}-s{v[0]}")
        return PageView(event_id=e, customer_id=c, event_time=t, payload=payload)

    def play(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, song, _, seconds = v
        payload = PlayPayload(session_id=f"{c}-s{sn}", item_id=self.songs[song], duration_s=seconds)
        return Play(event_id=e, customer_id=c, event_time=t, payload=payload)

    def like(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return Like(event_id=e, customer_id=c, event_time=t, payload=payload)

    def dislike(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return Dislike(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_friend(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        friend = self.ids[v[1]]
        payload = AddFriendPayload(
            session_id=f"{c}-s{v[0]}", friend_id=friend if friend != c else None
        )
        return AddFriend(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_to_playlist(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, song, playlist, _ = v
        payload = AddToPlaylistPayload(
            session_id=f"{c}-s{sn}", item_id=self.songs[song], playlist_id=f"{c}-pl{playlist}"
        )
        return AddToPlaylist(event_id=e, customer_id=c, event_time=t, payload=payload)

    def help(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = HelpPayload(session_id=f"{c}-s{v[0]}", topic=_HELP_TOPICS[v[1]])
        return Help(event_id=e, customer_id=c, event_time=t, payload=payload)

    def error(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        code, message = _ERRORS[v[1]]
        payload = ErrorPayload(session_id=f"{c}-s{v[0]}", code=code, message=message)
        return Error(event_id=e, customer_id=c, event_time=t, payload=payload)

    def upgrade(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PlanChangePayload(from_level="free", to_level="paid")
        return Upgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def downgrade(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PlanChangePayload(from_level="paid", to_level="free")
        return Downgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def cancellation(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = CancellationPayload(reason=_REASONS[v[1]])
        return Cancellation(event_id=e, customer_id=c, event_time=t, payload=payload)

    def purchase(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        order, combo, _, _ = v
        lines = _order_lines(combo, self.price)
        amount, quantity = _order_totals(lines)
        payload = PurchasePayload(
            order_id=f"{c}-o{order}", amount=amount, currency="GBP", quantity=quantity, lines=lines
        )
        return Purchase(event_id=e, customer_id=c, event_time=t, payload=payload)

    def refund(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        order, combo, _, _ = v
        lines = _order_lines(combo, self.price)
        amount, quantity = _order_totals(lines)
        payload = RefundPayload(
            order_id=f"{c}-r{order}",
            amount=amount,
            currency="GBP",
            quantity=quantity,
            original_order_id=f"{c}-o{order}",
            lines=lines,
        )
        return Refund(event_id=e, customer_id=c, event_time=t, payload=payload)


# --- Public entry points -------------------------------------------------------------------


def simulate(config: SimulationConfig) -> Iterator[Event]:
    """Generate every event of the simulation, in non-decreasing ``event_time`` order.

    Ties are broken by customer id, then by the customer's sequence number, so the order
    (and the canonical JSON of each event) is fully determined by ``config``. Events of a
    session that straddles the end of the period are stamped after ``config.end``.
    """
    return _Simulator(config).events()


def write_jsonl(
    events: Iterable[Event],
    destination: str | Path | IO[bytes],
    *,
    chunk_events: int = 4096,
    flush: bool = False,
) -> int:
    """Write ``encode_event(event) + b"\\n"`` per event; return how many were written.

    ``destination`` is a path (created or truncated) or a binary file object (left open).
    Writes are batched ``chunk_events`` at a time; with ``flush`` the file object is flushed
    after each batch (useful for paced output to a pipe).
    """
    with ExitStack() as stack:
        if isinstance(destination, (str, Path)):
            out: IO[bytes] = stack.enter_context(open(destination, "wb"))
        else:
            out = destination
        count, chunk = 0, []
        for event in events:
            chunk.append(encode_event(event))
            if len(chunk) >= chunk_events:
                count += _write_chunk(out, chunk, flush)
                chunk = []
        if chunk:
            count += _write_chunk(out, chunk, flush)
        return count


def _write_chunk(out: IO[bytes], chunk: list[bytes], flush: bool) -> int:
    out.write(b"\n".join(chunk) + b"\n")
    if flush:
        out.flush()
    return len(chunk)


TRUTH_COLUMNS = tuple(f.name for f in fields(CustomerTruth))


def write_truth(truths: Iterable[CustomerTruth], path: str | Path) -> int:
    """Write the ground truth as CSV, one row per customer; return the number of rows.

    Columns, in order: ``customer_id``; ``churn_probability`` (0-1, of churning within the
    period); ``churned`` (``true``/``false``); ``churn_time`` (RFC 3339 UTC, empty if not
    churned); ``cancelled`` (emitted a cancellation event); ``churn_cause`` (``baseline``,
    ``drift`` or empty); ``signup_time`` (UTC, may precede the period); ``initial_level``
    (``free``/``paid``); ``sessions_per_day`` (latent mean before any decline);
    ``decline_start`` (UTC, empty if not churned).
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for truth in truths:
            writer.writerow([_truth_cell(getattr(truth, name)) for name in TRUTH_COLUMNS])
            count += 1
    return count


def _truth_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def read_truth(path: str | Path) -> list[CustomerTruth]:
    """Read a file written by :func:`write_truth` back into :class:`CustomerTruth` objects."""

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    truths = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            signup = when(row["signup_time"])
            assert signup is not None
            truths.append(
                CustomerTruth(
                    customer_id=row["customer_id"],
                    churn_probability=float(row["churn_probability"]),
                    churned=row["churned"] == "true",
                    churn_time=when(row["churn_time"]),
                    cancelled=row["cancelled"] == "true",
                    churn_cause=row["churn_cause"] or None,  # type: ignore[arg-type]
                    signup_time=signup,
                    initial_level=row["initial_level"],  # type: ignore[arg-type]
                    sessions_per_day=float(row["sessions_per_day"]),
                    decline_start=when(row["decline_start"]),
                )
            )
    return truths
