"""Retraining on the event archive's latest window, behind a promotion gate.

:func:`retrain` does, for one request:

1. **window** — weekly cutoffs, midnight UTC, within the last ``CHURN_RETRAIN_WINDOW_DAYS``
   before ``now``, counted back from the latest cutoff whose label window
   ``(cutoff, cutoff + horizon]`` has ended by ``now`` (so every label is complete), none
   earlier than :data:`WARMUP_DAYS` after the archive's first event date (features need
   some history). The label and horizon are the champion's (``training.label`` /
   ``training.horizon_days``), else ``cancellation_or_inactivity`` and
   ``CHURN_LABEL_HORIZON_DAYS``;
2. **dataset** — point-in-time rows (:func:`offline.dataset.build_dataset`) at those
   cutoffs from the archive's events (deduplicated, in event-time order) from
   :data:`HISTORY_DAYS` before the first cutoff (the longest feature window) up to ``now``;
3. **split** — the last third of the cutoffs (at least one) validate, the earlier ones
   train, purged so that no training label window reaches into the validation period
   (:func:`offline.train.split_latest_cutoffs`);
4. **train** — :func:`offline.train.train_bootstrap` on the training rows;
5. **gate** — the champion and the candidate score the *same* validation rows; the
   candidate is promoted only when its ROC AUC is higher by more than
   ``CHURN_PROMOTION_MIN_GAIN`` (with no champion, the candidate is promoted);
6. **record** — the candidate is registered either way (with its reference sample, from
   the validation rows), promoted when it passed, and the decision — ``promoted`` or
   ``kept_champion`` with both models' metrics on those rows, or ``retrain_failed`` with
   the reason — is recorded in ``Keys.decisions`` (:mod:`core.decisions`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pyarrow.compute as pc
import redis
from sklearn.metrics import average_precision_score

from core import metrics as prom
from core.archive import EventArchive, read_segment
from core.decisions import Decision, RetrainRequest, record_decision
from core.features import FEATURE_NAMES, WINDOW_DAYS
from core.keys import Keys
from core.model import LinearModel, Scorer
from core.registry import ModelRegistry
from core.settings import Settings
from offline.dataset import LABEL_KINDS, Dataset, LabelKind, build_dataset
from offline.gate import GateResult, gate_on_window, without_unloadable_champion
from offline.train import reference_sample, split_latest_cutoffs, train_bootstrap

log = logging.getLogger(__name__)

WARMUP_DAYS = 28  # no cutoff earlier than this many days after the archive's first event
HISTORY_DAYS = max(WINDOW_DAYS)  # events this long before the first cutoff feed its features
CUTOFF_STEP_DAYS = 7
DEFAULT_LABEL: LabelKind = "cancellation_or_inactivity"

Progress = Callable[[str], None]


class RetrainError(RuntimeError):
    """The retrain could not produce a candidate (the message says why)."""


@dataclass
class RetrainOutcome:
    decision: Decision
    candidate: LinearModel | None = None
    gate: GateResult | None = None
    details: dict[str, Any] = field(default_factory=dict)


def weekly_cutoffs(
    now: datetime,
    horizon_days: int,
    window_days: int,
    not_before: datetime | None = None,
    step_days: int = CUTOFF_STEP_DAYS,
) -> list[datetime]:
    """Midnight-UTC cutoffs every ``step_days`` within the last ``window_days`` before
    ``now``, the latest one with its label window over by ``now``, none before
    ``not_before``; oldest first.

    >>> now = datetime(2026, 3, 1, 9, tzinfo=UTC)
    >>> [d.date().isoformat() for d in weekly_cutoffs(now, 14, 30)]
    ['2026-02-01', '2026-02-08', '2026-02-15']
    >>> len(weekly_cutoffs(now, 14, 30, not_before=datetime(2026, 2, 5, tzinfo=UTC)))
    2
    """
    last = (now - timedelta(days=horizon_days)).astimezone(UTC)
    last = last.replace(hour=0, minute=0, second=0, microsecond=0)
    first = now - timedelta(days=window_days)
    if not_before is not None:
        first = max(first, not_before)
    cutoffs = []
    cut = last
    while cut >= first:
        cutoffs.append(cut)
        cut -= timedelta(days=step_days)
    return sorted(cutoffs)


def archive_start(archive: EventArchive) -> datetime | None:
    """Midnight UTC of the archive's first event date: from the first Parquet partition's
    name, and from the segments not compacted yet."""
    starts: list[datetime] = []
    for path in archive.files()[:1]:
        try:
            day = datetime.strptime(path.parent.name.removeprefix("date="), "%Y-%m-%d")
        except ValueError:
            continue
        starts.append(day.replace(tzinfo=UTC))
    for segment in archive.segments():
        times = read_segment(segment).column("event_time")
        if len(times):
            starts.append(cast(datetime, pc.min(times).as_py()))
    if not starts:
        return None
    return min(starts).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def gate(
    champion: Scorer | None,
    candidate: LinearModel,
    valid: Dataset,
    min_gain: float = 0.0,
) -> tuple[GateResult, dict[str, Any]]:
    """Score ``valid`` with both models and decide with :func:`offline.gate.gate_on_window`
    (the trainer's gate); also return the PR AUCs and the row counts it rests on."""
    y = valid.y
    positives = int(y.sum())
    if not 0 < positives < len(y):
        raise RetrainError(
            f"the validation rows have a single class ({positives} positives of {len(y)}): "
            "no ROC AUC to compare"
        )
    scores = candidate.score_many(_columns(valid, candidate.feature_names))
    result = gate_on_window(scores, valid, champion, min_gain=min_gain)
    details: dict[str, Any] = {
        "candidate_pr_auc": float(average_precision_score(y, scores)),
        "champion_pr_auc": None,
        "gate_rows": len(y),
        "gate_positives": positives,
    }
    if champion is not None and result.champion_roc_auc is not None:
        theirs = champion.score_many(_columns(valid, champion.feature_names))
        details["champion_pr_auc"] = float(average_precision_score(y, theirs))
    return result, details


def _columns(dataset: Dataset, names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(dataset.feature_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise RetrainError(f"the dataset lacks the model's features {', '.join(missing[:5])}")
    return dataset.X[:, [index[n] for n in names]]


def _label_of(training: dict[str, Any], settings: Settings) -> tuple[LabelKind, int]:
    label = training.get("label")
    horizon = training.get("horizon_days")
    kind: LabelKind = cast(LabelKind, label) if label in LABEL_KINDS else DEFAULT_LABEL
    days = int(horizon) if isinstance(horizon, int) and horizon > 0 else settings.label_horizon_days
    return kind, days


def retrain(
    settings: Settings,
    client: redis.Redis,
    request: RetrainRequest | None = None,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RetrainOutcome:
    """Run one retrain (see the module docstring); never raises for a failed retrain: the
    failure is recorded as a ``retrain_failed`` decision and returned."""
    request = request or RetrainRequest(reason="manual retrain", requested_by="cli")
    say = progress or (lambda message: log.info("retrain: %s", message))
    keys = Keys.of(settings)
    registry = ModelRegistry(settings, client)
    pointer = registry.champion()
    started = time.perf_counter()
    try:
        outcome = _retrain(settings, registry, request, now or datetime.now(UTC), say)
    except Exception as exc:
        log.exception("retrain failed")
        decision = Decision(
            decision="retrain_failed",
            trigger=request.trigger,
            reason=f"{request.reason}; the retrain failed: {exc}",
            champion=pointer.version if pointer else None,
            metrics={"request": request.details, "requested_by": request.requested_by},
            promoted=False,
        )
        record_decision(client, keys, decision)
        prom.MONITOR_RETRAINS.labels("failed").inc()
        return RetrainOutcome(decision)
    outcome.details["seconds"] = round(time.perf_counter() - started, 1)
    decision = replace(outcome.decision, metrics={**outcome.decision.metrics, **outcome.details})
    record_decision(client, keys, decision)
    prom.MONITOR_RETRAINS.labels("promoted" if decision.promoted else "kept_champion").inc()
    outcome.decision = decision
    return outcome


def _retrain(
    settings: Settings,
    registry: ModelRegistry,
    request: RetrainRequest,
    now: datetime,
    say: Progress,
) -> RetrainOutcome:
    state = registry.champion_state()
    pointer, champion = state.pointer, state.model
    training = registry.manifest(champion.version).training if champion else {}
    label, horizon = _label_of(training, settings)
    archive = EventArchive(settings.archive_dir)
    first_day = archive_start(archive)
    if first_day is None:
        raise RetrainError(f"the event archive {archive.root} is empty")
    cutoffs = weekly_cutoffs(
        now,
        horizon,
        settings.retrain_window_days,
        not_before=first_day + timedelta(days=WARMUP_DAYS),
    )
    if len(cutoffs) < 2:
        raise RetrainError(
            f"the last {settings.retrain_window_days} days with a {horizon}-day horizon and "
            f"an archive starting {first_day:%Y-%m-%d} leave {len(cutoffs)} weekly "
            "cutoff(s); at least 2 are needed"
        )
    window_start = cutoffs[0] - timedelta(days=HISTORY_DAYS)
    say(f"building the dataset from {archive.root} ({len(cutoffs)} weekly cutoffs)")
    dataset = build_dataset(
        archive.read_events(window_start, now),
        cutoffs,
        horizon,
        label=label,
        retention_days=settings.retention_days,
        observed_until=now,
        feature_names=FEATURE_NAMES,
    )
    kept = np.unique(dataset.cutoffs)
    if len(kept) < 2:
        raise RetrainError(
            f"the archive gave rows at {len(kept)} cutoff(s) in the window "
            f"{window_start:%Y-%m-%d}..{now:%Y-%m-%d}; at least 2 are needed"
        )
    train_set, valid_set = split_latest_cutoffs(dataset)
    say(f"training on {len(train_set):,} rows, validating on {len(valid_set):,}")
    try:
        candidate, metrics = train_bootstrap(train_set, valid_set)
    except ValueError as exc:
        raise RetrainError(str(exc)) from None
    result, details = gate(champion, candidate, valid_set, settings.promotion_min_gain)
    if pointer is not None and state.problem is not None:
        result = without_unloadable_champion(result, pointer.version, state.problem)
    info = {
        "source": "archive",
        "window": [_iso(window_start), _iso(now)],
        "label": label,
        "horizon_days": horizon,
        "cutoffs": f"weekly, {len(kept)} with rows",
        "train_cutoffs": candidate.metadata["train_cutoffs"],
        "valid_cutoffs": candidate.metadata["valid_cutoffs"],
        "train_rows": len(train_set),
        "valid_rows": len(valid_set),
        "trigger": request.trigger,
        "reason": request.reason,
        "previous_champion": pointer.version if pointer else None,
    }
    candidate = replace(candidate, metadata={**candidate.metadata, "training": info})
    gate_metrics = {
        "candidate_roc_auc": result.candidate_roc_auc,
        "champion_roc_auc": result.champion_roc_auc,
        "unloadable_champion": result.unloadable_champion,
        **details,
    }
    # kept with the candidate's metrics, in offline.gate's shape: which champion it was
    # compared with, on which validation cutoffs, and the verdict (a later manual
    # promotion relies on it: offline.gate.gate_from_manifests)
    gate_record = {**details, **result.to_dict()}
    say(f"registering {candidate.version}: {result.reason}")
    registry.register(
        candidate,
        {**metrics, "gate": gate_record},
        info,
        reference=reference_sample(candidate, valid_set.X),
    )
    if result.passed:
        registry.promote(candidate.version)
    decision = Decision(
        decision="promoted" if result.passed else "kept_champion",
        trigger=request.trigger,
        reason=f"{request.reason}; {result.reason}",
        champion=candidate.version if result.passed else (pointer.version if pointer else None),
        candidate=candidate.version,
        metrics={
            **gate_metrics,
            "candidate_validation": {k: metrics[k] for k in ("roc_auc", "pr_auc", "brier")},
            "requested_by": request.requested_by,
            "requested_at": request.requested_at,
            "window": info["window"],
            "train_rows": len(train_set),
            "valid_rows": len(valid_set),
        },
        promoted=result.passed,
    )
    log.info(
        "retrain finished candidate=%s promoted=%s candidate_roc_auc=%.4f champion_roc_auc=%s",
        candidate.version,
        result.passed,
        result.candidate_roc_auc or 0.0,
        f"{result.champion_roc_auc:.4f}" if result.champion_roc_auc is not None else "-",
    )
    return RetrainOutcome(decision, candidate, result, {})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
