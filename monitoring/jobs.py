"""The monitoring jobs the ``churnstream monitor`` loop runs, each with its trigger.

* :func:`drift_job` — a drift report (:mod:`monitoring.drift`), then the drift verdict
  (:func:`monitoring.trigger.on_drift`) recorded and acted on;
* :func:`labels_job` — a score snapshot when one is due, then the label join of every
  matured period (:mod:`monitoring.labels`), the realized-AUC gauges, and the performance
  verdict on the latest matured period (:func:`monitoring.trigger.on_performance`);
* :func:`band_counts` — customers per band of the champion, for dashboards.

The retrain itself is not here (monitoring does not import the trainer): the loop drains
the requests these jobs queue and hands them to the trainer.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from core import metrics
from core.archive import EventArchive
from core.decisions import Decision
from core.keys import Keys
from core.model import LinearModel
from core.registry import ModelRegistry
from core.score_reads import ScoreReads
from core.settings import Settings
from core.store import FeatureStore
from monitoring.drift import DriftOutcome, run_drift
from monitoring.labels import LABELS, PeriodPerformance, ScoreLog
from monitoring.trigger import TriggerPolicy, act_on, on_drift, on_performance

log = logging.getLogger(__name__)

_model_info_version: list[str] = []


def _champion_info(registry: ModelRegistry) -> str | None:
    pointer = registry.champion()
    version = pointer.version if pointer else None
    if version and _model_info_version != [version]:
        for old in _model_info_version:
            metrics.MONITOR_MODEL_INFO.labels(old).set(0)
        metrics.MONITOR_MODEL_INFO.labels(version).set(1)
        _model_info_version[:] = [version]
    return version


def drift_job(
    settings: Settings,
    client: redis.Redis,
    *,
    now: float | None = None,
    as_of: float | None = None,
) -> tuple[DriftOutcome, Decision | None]:
    """One drift report and the trigger's decision on it (``None`` when skipped)."""
    _champion_info(ModelRegistry(settings, client))
    try:
        outcome = run_drift(settings, client, now=now, as_of=as_of)
    except Exception:
        metrics.MONITOR_DRIFT_RUNS.labels("error").inc()
        raise
    if outcome.summary is None:
        return outcome, None
    summary = outcome.summary
    verdict = on_drift(
        summary.dataset_drift,
        summary.drift_share,
        summary.share_threshold,
        summary.drifted_features,
        TriggerPolicy.from_settings(settings),
    )
    if outcome.report is not None:
        verdict.metrics["report"] = outcome.report.entry["id"]
    decision = act_on(
        client,
        Keys.of(settings),
        verdict,
        TriggerPolicy.from_settings(settings),
        outcome.model_version,
    )
    return outcome, decision


@dataclass
class LabelsOutcome:
    snapshot: str | None = None
    periods: list[PeriodPerformance] = field(default_factory=list)
    decision: Decision | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _horizon_and_label(registry: ModelRegistry, settings: Settings) -> tuple[int, str]:
    pointer = registry.champion()
    training = registry.manifest(pointer.version).training if pointer else {}
    horizon = training.get("horizon_days")
    label = training.get("label")
    return (
        int(horizon) if isinstance(horizon, int) and horizon > 0 else settings.label_horizon_days,
        label if label in LABELS else "cancellation_or_inactivity",
    )


def labels_job(
    settings: Settings, client: redis.Redis, *, now: datetime | None = None
) -> LabelsOutcome:
    """Snapshot served scores when due; evaluate matured periods; decide on the latest."""
    now = now or datetime.now(UTC)
    registry = ModelRegistry(settings, client)
    champion = _champion_info(registry)
    log_dir = ScoreLog(settings.score_log_dir)
    outcome = LabelsOutcome()
    if log_dir.due(now, settings.score_log_every_seconds):
        store = FeatureStore(client, Keys.of(settings))
        path = log_dir.snapshot(store, now)
        outcome.snapshot = path.name if path else None
    horizon, label = _horizon_and_label(registry, settings)
    validation = {
        m.version: float(m.metrics["roc_auc"])
        for m in registry.list()
        if isinstance(m.metrics.get("roc_auc"), int | float)
        and math.isfinite(float(m.metrics["roc_auc"]))
    }
    outcome.periods = log_dir.evaluate_matured(
        EventArchive(settings.archive_dir),
        now,
        horizon,
        validation,
        settings.auc_drop_threshold,
        label,
    )
    metrics.MONITOR_LAST_RUN.labels("labels").set(time.time())
    if not outcome.periods:
        recorded = log_dir.performance()
        if recorded:  # e.g. after a restart: show the latest period evaluated before
            _show_performance(PeriodPerformance(**recorded[-1]))
        return outcome
    latest = outcome.periods[-1]
    _show_performance(latest)
    policy = TriggerPolicy.from_settings(settings)
    verdict = on_performance(
        latest.roc_auc,
        latest.validation_roc_auc,
        policy,
        {
            "period": latest.period,
            "cutoff": latest.cutoff,
            "rows": latest.rows,
            "positives": latest.positives,
            "realized_pr_auc": latest.pr_auc,
            "served_by": latest.model_version,
        },
    )
    outcome.decision = act_on(client, Keys.of(settings), verdict, policy, champion)
    return outcome


def _show_performance(latest: PeriodPerformance) -> None:
    """The realized-performance gauges, from the latest matured period."""
    if latest.roc_auc is not None:
        metrics.MONITOR_REALIZED_ROC_AUC.set(latest.roc_auc)
    if latest.pr_auc is not None:
        metrics.MONITOR_REALIZED_PR_AUC.set(latest.pr_auc)
    if latest.validation_roc_auc is not None:
        metrics.MONITOR_VALIDATION_ROC_AUC.set(latest.validation_roc_auc)
    metrics.MONITOR_AUC_DEGRADED.set(1 if latest.degraded else 0)
    metrics.MONITOR_LABELLED_ROWS.set(latest.rows)


def band_counts(client: redis.Redis, keys: Keys, model: LinearModel) -> dict[str, int]:
    """Customers whose latest score falls in each of ``model``'s bands (three ZCOUNTs per
    shard, one round trip), also set as the per-band gauges."""
    counts = ScoreReads(client, keys).band_counts(model.bands)
    for band, count in counts.items():
        metrics.MONITOR_CUSTOMERS_BY_BAND.labels(band).set(count)
    return counts
