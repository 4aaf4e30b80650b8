"""The population: every customer's latent traits, churn outcome and timing, drawn up
front from the seed, and the answer key (:func:`ground_truth`) derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from offline.simulator.config import CustomerTruth, SimulationConfig, customer_id
from offline.simulator.constants import (
    _DEVICES,
    _MIN_TENURE_DAYS,
    _N_SONGS,
    _NEVER,
    _REASONS,
    _REFERENCE_DAYS,
    _TECHNICAL_REASON,
    DAY_S,
    _utc,
)


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
