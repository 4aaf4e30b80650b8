"""Oracles for simulated data: what the simulator's truth says about each row's label.

Two of them, for a point-in-time row (customer, cutoff ``c``):

* :func:`probability_scores` — **the true churn probability**: the probability with
  which the simulator drew whether the customer churns in the period
  (``CustomerTruth.churn_probability``), the same for all of a customer's rows. A model
  should rank at least about as well (``oracle_roc_auc`` in the trainer's metrics);
* :func:`oracle_scores` — **the hidden state at the cutoff**, an upper bound no model
  reaches (``oracle_state_roc_auc``):

With the label "cancellation or no activity within ``H`` days", the state oracle knows
the customer's whole hidden state *at* ``c`` — what no model sees directly — but nothing
that happens after it:

* a customer who already churned before ``c`` (silently: a cancelled one has no row) never
  acts again, so the label is certainly 1;
* a customer whose engagement is already declining at ``c`` churns at the decline's start
  plus a duration uniform in 14-35 days (as the simulator draws it); the oracle takes the
  probability that this falls in the window, given that it has not happened by ``c``;
* everyone still active may also simply not come back within ``H`` days: with Poisson
  sessions at the true rate ``r`` per day, probability ``exp(-r H)``; a decline that
  has not begun by ``c`` cannot end in a churn within ``H`` <= 14 days.

So ``oracle = 1`` for the churned, ``q + (1 - q) exp(-r H)`` for the declining (``q`` the
churn-in-window probability) and ``exp(-r H)`` for the others. It ignores the drift of a
``drift_at`` simulation. The trainer's model, which sees only behaviour, is judged against
it on the same rows (:func:`oracle_auc`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from offline.dataset import Dataset
from offline.simulator.config import CustomerTruth, SimulationConfig

DECLINE_MIN, DECLINE_MAX = 14.0, 35.0  # days of decline before a churn, as the simulator
DAY_S = 86_400


def oracle_scores(
    dataset: Dataset, truths: Sequence[CustomerTruth], config: SimulationConfig
) -> np.ndarray:
    """The oracle probability of each row's label (see the module docstring)."""
    del config  # the truth carries absolute times; kept for the call's symmetry
    by_id = {t.customer_id: t for t in truths}
    rows = [by_id[cid] for cid in dataset.customer_ids]
    never = np.inf
    churn = np.array([t.churn_time.timestamp() if t.churn_time else never for t in rows])
    decline = np.array([t.decline_start.timestamp() if t.decline_start else never for t in rows])
    rate = np.array([t.sessions_per_day for t in rows])
    c = dataset.cutoffs.astype(float)
    h = float(dataset.horizon_days)
    silent = np.exp(-rate * h)
    # declining at c: churn at decline + D, D ~ U(DECLINE_MIN, DECLINE_MAX) days, D > a
    a = np.where(np.isfinite(decline), (c - decline) / DAY_S, 0.0)
    low = np.maximum(DECLINE_MIN, a)
    high = np.minimum(DECLINE_MAX, a + h)
    in_window = np.clip((high - low) / np.maximum(DECLINE_MAX - low, 1e-9), 0.0, 1.0)
    declining = (decline <= c) & (churn > c)
    scores = np.where(declining, in_window + (1.0 - in_window) * silent, silent)
    scores = np.where(churn <= c, 1.0, scores)
    result: np.ndarray = scores
    return result


def oracle_auc(
    dataset: Dataset, truths: Sequence[CustomerTruth], config: SimulationConfig
) -> float:
    """ROC AUC of the state oracle on ``dataset``'s rows."""
    return float(roc_auc_score(dataset.y, oracle_scores(dataset, truths, config)))


def probability_scores(dataset: Dataset, truths: Sequence[CustomerTruth]) -> np.ndarray:
    """Each row's customer's true churn probability (see the module docstring)."""
    by_id = {t.customer_id: t.churn_probability for t in truths}
    return np.array([by_id[cid] for cid in dataset.customer_ids])


def probability_auc(dataset: Dataset, truths: Sequence[CustomerTruth]) -> float:
    """ROC AUC of the true churn probabilities on ``dataset``'s rows."""
    return float(roc_auc_score(dataset.y, probability_scores(dataset, truths)))
