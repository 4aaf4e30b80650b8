"""The retraining trigger: pure decision functions, and recording what was decided.

Two signals ask for a retrain:

* **drift** — a drift report found dataset drift (Evidently's rule: at least
  ``CHURN_DRIFT_SHARE_THRESHOLD`` of the features drifted), when
  ``CHURN_RETRAIN_ON_DRIFT`` is on;
* **auc_drop** — the realized ROC AUC of served scores fell more than
  ``CHURN_AUC_DROP_THRESHOLD`` (relative, 5 % by default) below the champion's validation
  ROC AUC.

A cooldown (``CHURN_RETRAIN_COOLDOWN_SECONDS``) keeps a lasting drift from asking again and
again: the first request sets ``Keys.retrain_cooldown`` with that expiry (``SET NX EX``,
so two monitors cannot both get through), and a trigger that fires while it exists is
recorded as ``cooldown`` and asks for nothing. Manual requests (``POST /admin/retrain``,
``churnstream retrain``) are not subject to it.

Every verdict is recorded in ``Keys.decisions`` (:mod:`core.decisions`): ``no_retrain``,
``cooldown`` or ``retrain_requested``; the retrain itself records its outcome.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import redis

from core import metrics
from core.decisions import (
    Decision,
    DecisionKind,
    RetrainRequest,
    Trigger,
    push_retrain_request,
    record_decision,
)
from core.keys import Keys
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerPolicy:
    """When to ask for a retrain (see the module docstring)."""

    retrain_on_drift: bool = True
    auc_drop_threshold: float = 0.05
    cooldown_seconds: int = 86_400

    @classmethod
    def from_settings(cls, settings: Settings) -> TriggerPolicy:
        return cls(
            retrain_on_drift=settings.retrain_on_drift,
            auc_drop_threshold=settings.auc_drop_threshold,
            cooldown_seconds=settings.retrain_cooldown_seconds,
        )


@dataclass(frozen=True)
class Verdict:
    """What a signal says: retrain or not, and why (``metrics``: the numbers behind it)."""

    retrain: bool
    trigger: Trigger
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


def on_drift(
    dataset_drift: bool,
    drift_share: float,
    share_threshold: float,
    drifted_features: list[str],
    policy: TriggerPolicy,
) -> Verdict:
    """The verdict on a drift report.

    >>> on_drift(True, 0.62, 0.5, ["plays_7d"], TriggerPolicy()).reason
    'dataset drift: 62% of the features drifted (threshold 50%)'
    >>> on_drift(False, 0.1, 0.5, [], TriggerPolicy()).retrain
    False
    """
    numbers = {
        "drift_share": drift_share,
        "share_threshold": share_threshold,
        "drifted_features": list(drifted_features),
    }
    share = f"{drift_share:.0%} of the features drifted (threshold {share_threshold:.0%})"
    if not dataset_drift:
        return Verdict(False, "drift", f"no dataset drift: {share}", numbers)
    if not policy.retrain_on_drift:
        return Verdict(
            False, "drift", f"dataset drift ({share}) but CHURN_RETRAIN_ON_DRIFT is off", numbers
        )
    return Verdict(True, "drift", f"dataset drift: {share}", numbers)


def auc_dropped(realized: float, validation: float, threshold: float) -> bool:
    """True when ``realized`` is more than ``threshold`` (a share) below ``validation``.

    >>> auc_dropped(0.75, 0.80, 0.05), auc_dropped(0.77, 0.80, 0.05)
    (True, False)
    """
    return realized < validation * (1.0 - threshold)


def on_performance(
    realized_auc: float | None,
    validation_auc: float | None,
    policy: TriggerPolicy,
    details: dict[str, Any] | None = None,
) -> Verdict:
    """The verdict on the realized ROC AUC of the latest matured period.

    >>> on_performance(0.70, 0.80, TriggerPolicy()).reason
    'realized ROC AUC 0.700 is 12.5% below the validation ROC AUC 0.800 (limit 5%)'
    """
    numbers = {
        "realized_roc_auc": realized_auc,
        "validation_roc_auc": validation_auc,
        "auc_drop_threshold": policy.auc_drop_threshold,
        **(details or {}),
    }
    if realized_auc is None or validation_auc is None or not math.isfinite(realized_auc):
        return Verdict(False, "auc_drop", "no realized or validation ROC AUC to compare", numbers)
    drop = (validation_auc - realized_auc) / validation_auc if validation_auc else 0.0
    numbers["relative_drop"] = drop
    text = (
        f"realized ROC AUC {realized_auc:.3f} is {abs(drop):.1%} "
        f"{'below' if drop >= 0 else 'above'} the validation ROC AUC {validation_auc:.3f} "
        f"(limit {policy.auc_drop_threshold:.0%})"
    )
    return Verdict(
        auc_dropped(realized_auc, validation_auc, policy.auc_drop_threshold),
        "auc_drop",
        text,
        numbers,
    )


def act_on(
    client: redis.Redis,
    keys: Keys,
    verdict: Verdict,
    policy: TriggerPolicy,
    champion: str | None,
) -> Decision:
    """Record ``verdict`` and, when it asks for a retrain outside the cooldown, queue the
    request. Returns the decision recorded."""
    kind: DecisionKind = "no_retrain"
    reason, numbers = verdict.reason, verdict.metrics
    cooling_down = (
        verdict.retrain
        and policy.cooldown_seconds > 0
        and not client.set(
            keys.retrain_cooldown, verdict.trigger, nx=True, ex=policy.cooldown_seconds
        )
    )
    if cooling_down:
        left = max(int(client.ttl(keys.retrain_cooldown)), 0)
        kind = "cooldown"
        reason = f"{reason}; a retrain was requested recently, the cooldown has {left} s to run"
        numbers = {**numbers, "cooldown_left_seconds": left}
    elif verdict.retrain:
        push_retrain_request(
            client,
            keys,
            RetrainRequest(
                reason=verdict.reason,
                requested_by="monitor",
                trigger=verdict.trigger,
                details=verdict.metrics,
            ),
        )
        metrics.MONITOR_RETRAIN_REQUESTS.labels(verdict.trigger).inc()
        kind = "retrain_requested"
    decision = Decision(
        decision=kind, trigger=verdict.trigger, reason=reason, champion=champion, metrics=numbers
    )
    record_decision(client, keys, decision)
    return decision
