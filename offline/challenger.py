"""An online challenger: a river model scored in shadow beside the champion, learning as
labels mature. It never serves; its running metrics say whether it deserves promotion.

:class:`ShadowChallenger` is three plain calls, in event-time order:

* :meth:`~ShadowChallenger.score` — whenever the champion scores a customer at time ``t``
  (epoch seconds, UTC), score the same feature row with the river model and remember the
  pair (the prediction's label is "no purchase in ``(t, t + horizon]``");
* :meth:`~ShadowChallenger.observe` — every purchase event, so pending predictions of that
  customer learn that a purchase happened inside their window;
* :meth:`~ShadowChallenger.mature` — as time passes: every prediction whose window has
  closed gets its label, both scores update the running metrics, and the river model learns
  from it (``learn_one``), so it only ever learns from labels that exist by then.

:func:`shadow_replay` drives it over a historical event list (weekly scoring by default),
which is how its report is produced offline. The river model sees the champion's
features after the ``signed_log1p`` transform, then river's running standard scaler.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from river import compose, linear_model, metrics, optim, preprocessing

from core.aggregates import CustomerAggregates, epoch_seconds
from core.events import Event
from core.features import feature_matrix
from core.model import Scorer

DAY_S = 86_400


def default_model() -> compose.Pipeline:
    """signed log1p -> running standardisation -> logistic regression (SGD)."""

    def signed_log1p(x: dict[str, float]) -> dict[str, float]:
        return {k: math.copysign(math.log1p(abs(v)), v) for k, v in x.items()}

    return compose.Pipeline(
        compose.FuncTransformer(signed_log1p),
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.02), l2=1e-4),
    )


@dataclass
class _Pending:
    customer: str
    at: int
    features: dict[str, float]
    champion: float
    challenger: float
    bought: bool = False


@dataclass
class MaturedPrediction:
    """A prediction whose label window has closed: ``label`` 1 = no purchase in it."""

    customer: str
    at: int
    label: int
    champion: float
    challenger: float


@dataclass
class ShadowChallenger:
    """See the module docstring. ``horizon_days`` is the label window."""

    horizon_days: int = 90
    model: Any = field(default_factory=default_model)
    champion_auc: metrics.ROCAUC = field(default_factory=metrics.ROCAUC)
    challenger_auc: metrics.ROCAUC = field(default_factory=metrics.ROCAUC)
    learned: int = 0
    matured: list[MaturedPrediction] = field(default_factory=list)
    _queue: deque[_Pending] = field(default_factory=deque)
    _by_customer: dict[str, list[_Pending]] = field(default_factory=lambda: defaultdict(list))

    def score(
        self, customer: str, at: int, features: Mapping[str, float], champion_score: float
    ) -> float:
        """The challenger's churn probability for this row (recorded, never served)."""
        row = dict(features)
        proba = self.model.predict_proba_one(row).get(True, 0.5) if self.learned else 0.5
        pending = _Pending(customer, at, row, float(champion_score), float(proba))
        self._queue.append(pending)
        self._by_customer[customer].append(pending)
        return float(proba)

    def observe(self, event: Event) -> None:
        """Mark the pending predictions whose window holds this purchase."""
        if event.type != "purchase":
            return
        at, horizon = epoch_seconds(event), self.horizon_days * DAY_S
        for pending in self._by_customer.get(event.customer_id, ()):
            if pending.at < at <= pending.at + horizon:
                pending.bought = True

    def mature(self, now: int) -> int:
        """Label, measure and learn from every prediction whose window closed by ``now``
        (predictions are queued in time order). Returns how many matured."""
        horizon, count = self.horizon_days * DAY_S, 0
        while self._queue and self._queue[0].at + horizon <= now:
            pending = self._queue.popleft()
            mine = self._by_customer[pending.customer]
            mine.remove(pending)
            if not mine:
                del self._by_customer[pending.customer]
            label = 0 if pending.bought else 1
            self.champion_auc.update(bool(label), pending.champion)
            self.challenger_auc.update(bool(label), pending.challenger)
            self.model.learn_one(pending.features, bool(label))
            self.learned += 1
            self.matured.append(
                MaturedPrediction(
                    pending.customer, pending.at, label, pending.champion, pending.challenger
                )
            )
            count += 1
        return count

    @property
    def pending(self) -> int:
        return len(self._queue)


def shadow_replay(
    events: Iterable[Event],
    champion: Scorer,
    *,
    start: datetime,
    every_days: int = 7,
    horizon_days: int = 90,
    retention_days: int = 400,
    challenger: ShadowChallenger | None = None,
) -> ShadowChallenger:
    """Replay ``events`` (event-time order): from ``start`` every ``every_days`` days, score
    every customer seen so far with the champion and the challenger, exactly as a worker's
    periodic rescoring would, and let labels mature as the stream goes on."""
    shadow = challenger or ShadowChallenger(horizon_days=horizon_days)
    aggregates: dict[str, CustomerAggregates] = {}
    names = champion.feature_names
    next_score = int(start.timestamp())
    step = every_days * DAY_S
    for event in events:
        at = epoch_seconds(event)
        while at >= next_score:
            shadow.mature(next_score)
            _score_everyone(shadow, champion, aggregates, next_score, names)
            next_score += step
        shadow.observe(event)
        aggregates.setdefault(event.customer_id, CustomerAggregates(event.customer_id)).apply(
            event, retention_days
        )
    return shadow


def _score_everyone(
    shadow: ShadowChallenger,
    champion: Scorer,
    aggregates: Mapping[str, CustomerAggregates],
    t: int,
    names: Sequence[str],
) -> None:
    if not aggregates:
        return
    customers = list(aggregates)
    X = feature_matrix([aggregates[c] for c in customers], t, names)
    scores = champion.score_many(X)
    for customer, row, score in zip(customers, X.tolist(), scores.tolist(), strict=True):
        shadow.score(customer, t, dict(zip(names, row, strict=True)), score)


def shadow_report(shadow: ShadowChallenger) -> dict[str, Any]:
    """Running metrics, and exact ROC AUC of both models per scoring date (matured only)."""
    from sklearn.metrics import roc_auc_score

    by_date: dict[int, list[MaturedPrediction]] = defaultdict(list)
    for m in shadow.matured:
        by_date[m.at].append(m)
    per_date = []
    for at in sorted(by_date):
        rows = by_date[at]
        y = np.array([m.label for m in rows])
        if 0 < y.sum() < len(y):
            per_date.append(
                {
                    "scored_at": datetime.fromtimestamp(at, UTC).date().isoformat(),
                    "rows": len(rows),
                    "champion_roc_auc": round(
                        float(roc_auc_score(y, [m.champion for m in rows])), 4
                    ),
                    "challenger_roc_auc": round(
                        float(roc_auc_score(y, [m.challenger for m in rows])), 4
                    ),
                }
            )
    return {
        "learned": shadow.learned,
        "pending": shadow.pending,
        "running_champion_roc_auc": round(shadow.champion_auc.get(), 4),
        "running_challenger_roc_auc": round(shadow.challenger_auc.get(), 4),
        "by_scoring_date": per_date,
    }
