"""Training on transaction data (purchases and refunds): the label "no purchase within H days".

The recipe, for events in event-time order (e.g. from an importer):

* **cutoffs** are month starts (00:00 UTC). The **validation cutoffs** are given, or by
  default the last two month starts whose label window ``(c, c + H]`` ends by the last
  event. The **training cutoffs** are the month starts after the first event's month whose
  label window ends by the first validation cutoff (so no training label looks into the
  validation period: the split is purged).
* **rows** are every customer seen before a cutoff; **features** come from
  :func:`core.features.feature_matrix` on the customer's aggregates at the cutoff (the
  worker's own code, with the same ``retention_days``); the **label** is 1 when the
  customer makes no purchase in ``(c, c + H days]``.
* **models**, fitted on the training cutoffs and measured on the validation cutoffs:

  - the **logistic** model on :data:`core.features.TRANSACTION_FEATURE_NAMES`
    (``signed_log1p`` transform, balanced class weights, prior-corrected intercept): the
    model that is registered. By default (``monotone_in_silence``) each coefficient is
    bound to the sign that makes risk rise with silence (see
    :func:`core.features.silence_direction`): a customer who stays silent never sees their
    risk fall because a day passed;
  - the **RFM baseline**: the same logistic recipe on lifetime recency (days since the last
    purchase), frequency (purchases) and monetary value (amount spent), computed directly
    from all the events before the cutoff, whatever the retention;
  - **gradient boosting** (scikit-learn ``HistGradientBoostingClassifier``, balanced class
    weights, prior-corrected) on the same features, reported for comparison.

Band cut-offs come from the registered model's validation scores by a
:class:`offline.evaluate.BandPolicy`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.events import Event
from core.features import FEATURE_NAMES, TRANSACTION_FEATURE_NAMES, silence_direction
from core.targeting import Valuation
from offline.dataset import LABEL_DEFINITIONS, Dataset, build_dataset, to_epoch_seconds
from offline.evaluate import BandPolicy, band_rates, classification_metrics
from offline.targeting_evaluation import evaluate_targeting
from offline.train import (
    TrainingRun,
    fit_linear,
    new_version,
    ranked_coefficients,
    reference_sample,
)

Progress = Callable[[str], None]
DAY_S = 86_400
RFM_NAMES = ("recency_days", "frequency", "monetary")
BOOSTING_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "class_weight": "balanced",
    "random_state": 0,
}


@dataclass(frozen=True)
class TransactionTrainingConfig:
    """``valid_cutoffs`` as aware datetimes (default: see the module docstring);
    ``retention_days`` as the store's ``CHURN_RETENTION_DAYS`` (features look back at most
    that far, exactly as in the worker)."""

    horizon_days: int = 90
    valid_cutoffs: tuple[datetime, ...] | None = None
    retention_days: int = 120
    band_policy: BandPolicy = field(default_factory=BandPolicy)
    feature_names: tuple[str, ...] = TRANSACTION_FEATURE_NAMES
    transform: str = "signed_log1p"
    monotone_in_silence: bool = True
    with_boosting: bool = True


def month_starts(first: datetime, last: datetime) -> list[datetime]:
    """Month starts (00:00 UTC) strictly after ``first`` and at or before ``last``.

    >>> [d.date().isoformat() for d in month_starts(datetime(2010, 12, 1, 8, tzinfo=UTC),
    ...                                             datetime(2011, 3, 1, tzinfo=UTC))]
    ['2011-01-01', '2011-02-01', '2011-03-01']
    """
    year, month = first.year, first.month
    out: list[datetime] = []
    while True:
        month += 1
        if month == 13:
            year, month = year + 1, 1
        start = datetime(year, month, 1, tzinfo=UTC)
        if start > last:
            return out
        out.append(start)


def plan_cutoffs(
    first_event: datetime,
    last_event: datetime,
    horizon_days: int,
    valid_cutoffs: Sequence[datetime] | None = None,
) -> tuple[list[datetime], list[datetime]]:
    """(training cutoffs, validation cutoffs); see the module docstring. Raises
    :class:`ValueError` when the data cannot give both."""
    horizon = horizon_days * DAY_S
    end = to_epoch_seconds(last_event)
    months = month_starts(first_event, last_event)
    if valid_cutoffs:
        valid = sorted(valid_cutoffs)
        late = [c for c in valid if to_epoch_seconds(c) + horizon > end]
        if late:
            raise ValueError(
                f"validation cutoff {late[0].date()} + {horizon_days} days runs past the last "
                f"event ({last_event:%Y-%m-%d}): its labels would be incomplete"
            )
    else:
        complete = [c for c in months if to_epoch_seconds(c) + horizon <= end]
        valid = complete[-2:]
    if not valid:
        raise ValueError(
            f"the events span {first_event:%Y-%m-%d}..{last_event:%Y-%m-%d}: too short for one "
            f"validation cutoff with a {horizon_days}-day label window"
        )
    first_valid = to_epoch_seconds(valid[0])
    train = [c for c in months if to_epoch_seconds(c) + horizon <= first_valid]
    if not train:
        raise ValueError(
            f"no training cutoff: a label window of {horizon_days} days must end by the first "
            f"validation cutoff {valid[0].date()}, and the events start {first_event:%Y-%m-%d}"
        )
    return train, valid


def rfm_features(
    events: Sequence[Event], customers: Sequence[str], cutoffs: np.ndarray
) -> np.ndarray:
    """Lifetime recency (days since the last purchase, or since the first event without
    one), frequency (purchases) and monetary value (amount spent) of each (customer, cutoff)
    row, from every event strictly before the cutoff: the classic RFM baseline."""
    rows = [
        (e.customer_id, e.event_time.timestamp(), e.type == "purchase",
         float(getattr(e.payload, "amount", 0.0)) if e.type == "purchase" else 0.0)
        for e in events
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["customer", "t", "purchase", "amount"])
    out = np.zeros((len(customers), 3))
    wanted = pd.DataFrame({"customer": list(customers), "cutoff": cutoffs})
    for cut in np.unique(cutoffs).tolist():
        before = frame[frame["t"] < cut]
        bought = before[before["purchase"]].groupby("customer")
        first = before.groupby("customer")["t"].min()
        stats = pd.DataFrame(
            {"last": bought["t"].max(), "n": bought.size(), "spent": bought["amount"].sum()}
        ).reindex(first.index)
        stats["last"] = stats["last"].fillna(first)
        at = np.flatnonzero(wanted["cutoff"].to_numpy() == cut)
        picked = stats.reindex(wanted["customer"].iloc[at])
        out[at, 0] = (cut - picked["last"].to_numpy()) / DAY_S
        out[at, 1] = picked["n"].fillna(0).to_numpy()
        out[at, 2] = picked["spent"].fillna(0).to_numpy()
    return out


def _iso(when: datetime | int) -> str:
    moment = datetime.fromtimestamp(when, UTC) if isinstance(when, int) else when
    return moment.isoformat().replace("+00:00", "Z")


def _select_rows(dataset: Dataset, cutoffs: Sequence[datetime]) -> Dataset:
    wanted = np.isin(dataset.cutoffs, [to_epoch_seconds(c) for c in cutoffs])
    return dataset.select(wanted)


def _columns(dataset: Dataset, names: Sequence[str]) -> np.ndarray:
    index = [dataset.feature_names.index(name) for name in names]
    return dataset.X[:, index]


def _boosting_scores(train: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(**BOOSTING_PARAMS).fit(train, y)
    prior = float(np.mean(y))
    logit = estimator.decision_function(valid) + np.log(prior / (1.0 - prior))
    scores: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
    return scores


def _evaluate(
    y: np.ndarray, scores: np.ndarray, cutoffs: np.ndarray, policy: BandPolicy
) -> dict[str, Any]:
    bands = policy.cutoffs(scores)
    metrics = classification_metrics(y, scores, threshold=bands.high, cutoffs=cutoffs)
    metrics.update(band_rates(y, scores, bands))
    return metrics


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file (the data fingerprint of a training run)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train_on_transactions(
    events: Sequence[Event],
    config: TransactionTrainingConfig | None = None,
    *,
    source: dict[str, Any] | None = None,
    version: str | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Run the recipe of the module docstring on ``events`` (in event-time order).

    ``source`` describes the data (e.g. file, format, sha256) and is kept in the model's
    training metadata."""
    config = config or TransactionTrainingConfig()
    say = progress or (lambda _message: None)
    if not events:
        raise ValueError("no events to train on")
    first, last = events[0].event_time, events[-1].event_time
    train_cuts, valid_cuts = plan_cutoffs(first, last, config.horizon_days, config.valid_cutoffs)
    say(
        f"building the point-in-time dataset: {len(train_cuts)} training and "
        f"{len(valid_cuts)} validation cutoffs, {config.horizon_days}-day label"
    )
    dataset = build_dataset(
        events,
        [*train_cuts, *valid_cuts],
        config.horizon_days,
        label="no_purchase",
        retention_days=config.retention_days,
        observed_until=last,
        feature_names=FEATURE_NAMES,
    )
    train, valid = _select_rows(dataset, train_cuts), _select_rows(dataset, valid_cuts)
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"no rows to train ({len(train)}) or validate ({len(valid)}) on")
    names = config.feature_names
    X_train, X_valid = _columns(train, names), _columns(valid, names)

    say(f"fitting the logistic model on {len(train):,} rows ({len(names)} features)")
    signs = [silence_direction(name) for name in names] if config.monotone_in_silence else None
    fit = fit_linear(X_train, train.y, names, transform=config.transform, signs=signs)
    scores = fit.score_many(X_valid)
    bands = config.band_policy.cutoffs(scores)
    metrics = _evaluate(valid.y, scores, valid.cutoffs, config.band_policy)
    metrics["train_rows"] = len(train)
    metrics["train_base_rate"] = round(fit.train_base_rate, 6)

    say("fitting the RFM baseline")
    rfm_train = rfm_features(events, train.customer_ids, train.cutoffs)
    rfm_valid = rfm_features(events, valid.customer_ids, valid.cutoffs)
    baseline = fit_linear(rfm_train, train.y, RFM_NAMES, transform=config.transform)
    metrics["baseline"] = {
        "name": "RFM logistic regression (lifetime recency, frequency, monetary)",
        "features": list(RFM_NAMES),
        **_evaluate(valid.y, baseline.score_many(rfm_valid), valid.cutoffs, config.band_policy),
    }
    if config.with_boosting:
        say("fitting gradient boosting for comparison")
        boosted = _boosting_scores(X_train, train.y, X_valid)
        metrics["boosting"] = {
            "name": "HistGradientBoostingClassifier (not registered; comparison only)",
            "params": {k: v for k, v in BOOSTING_PARAMS.items() if k != "random_state"},
            **_evaluate(valid.y, boosted, valid.cutoffs, config.band_policy),
        }
    metrics["roc_auc_lift_over_baseline"] = round(
        metrics["roc_auc"] - metrics["baseline"]["roc_auc"], 6
    )
    say("measuring retention targeting on the validation cutoffs")
    valuation = Valuation(horizon_days=config.horizon_days, retention_days=config.retention_days)
    metrics["targeting"] = evaluate_targeting(valid, scores, valuation, events=events)

    label = LABEL_DEFINITIONS["no_purchase"].format(h=config.horizon_days)
    training = {
        **(source or {}),
        "label": "no_purchase",
        "label_definition": label,
        "horizon_days": config.horizon_days,
        "retention_days": config.retention_days,
        "feature_transform": config.transform,
        "data_window": [_iso(first), _iso(last)],
        "train_cutoffs": [_iso(c) for c in train_cuts],
        "valid_cutoffs": [_iso(c) for c in valid_cuts],
        "split": (
            "time-based, purged: training label windows (cutoff, cutoff + "
            f"{config.horizon_days} days] end by the first validation cutoff"
        ),
        "train_rows": len(train),
        "valid_rows": len(valid),
        "train_base_rate": round(train.base_rate, 6),
        "valid_base_rate": round(valid.base_rate, 6),
        "band_policy": config.band_policy.describe(),
    }
    training["monotone_in_silence"] = config.monotone_in_silence
    metadata = {
        "algorithm": "logistic regression (balanced class weights, L2, prior-corrected) on "
        f"{config.transform} features"
        + (
            ", coefficients sign-bound so silence never lowers risk"
            if config.monotone_in_silence
            else ""
        ),
        "label": "no_purchase",
        "horizon_days": config.horizon_days,
        "retention_days": config.retention_days,
        "train_cutoffs": [training["train_cutoffs"][0], training["train_cutoffs"][-1]],
        "valid_cutoffs": [training["valid_cutoffs"][0], training["valid_cutoffs"][-1]],
        "training": training,
    }
    model = fit.model(version or new_version(), bands, metadata)
    return TrainingRun(
        model=model,
        metrics=metrics,
        training=training,
        reference=reference_sample(model, X_valid),
        valid=valid,
        valid_scores=scores,
        importances=ranked_coefficients(model),
    )


def train_online_retail_file(
    path: str | Path,
    config: TransactionTrainingConfig | None = None,
    *,
    version: str | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Import an Online Retail file (see :mod:`offline.importers.online_retail`) and run the
    recipe on it; the training metadata names the file and its sha256. Raises
    :class:`offline.importers.common.ImportFormatError` for a file that cannot be read."""
    from offline.importers.online_retail import import_online_retail

    say = progress or (lambda _message: None)
    say(f"importing {path}")
    events, report = import_online_retail(path)
    rejected = ", ".join(f"{n:,} {reason}" for reason, n in report.rejects.most_common())
    say(
        f"imported {report.events_written:,} events of {report.customers:,} customers "
        f"({report.rows_rejected:,} rows rejected{': ' + rejected if rejected else ''})"
    )
    source = {
        "source": "online-retail",
        "file": str(path),
        "format": report.facts.get("layout", "online-retail"),
        "data_sha256": file_sha256(path),
        "events": report.events_written,
        "customers": report.customers,
    }
    return train_on_transactions(events, config, source=source, version=version, progress=progress)
