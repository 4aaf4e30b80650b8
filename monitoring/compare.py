"""Comparing live features with a reference sample using Evidently.

One Evidently ``Report`` per comparison: ``DataDriftPreset`` over the model's features and
a ``ValueDrift`` of the ``score`` column, with Evidently's tests enabled. The verdicts are
Evidently's own: a column drifted when its drift test failed (the method and threshold
Evidently picks by default: K-S p-value < 0.05 for up to 1,000 reference rows, normed
Wasserstein distance >= 0.1 above; chi-squared / Jensen-Shannon for categorical columns),
and the dataset drifted when the share of drifted features is at least ``share_threshold``
(Evidently's rule, 0.5 by default). The score's drift is reported beside the features and
does not count in the share.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

SCORE_COLUMN = "score"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: ``score`` is the statistic (a p-value or a distance)."""

    column: str
    method: str
    threshold: float | None
    score: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """What a comparison found. ``drift_share`` is the share of drifted features (0..1)."""

    drift_share: float
    dataset_drift: bool
    drifted_features: list[str]
    features: list[ColumnDrift]
    score: ColumnDrift | None
    share_threshold: float
    rows_current: int
    rows_reference: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "drifted_features": list(self.drifted_features),
            "score_drifted": self.score.drifted if self.score else None,
            "score": vars(self.score) if self.score else None,
            "features": [vars(c) for c in self.features],
            "share_threshold": self.share_threshold,
            "rows_current": self.rows_current,
            "rows_reference": self.rows_reference,
        }


@dataclass
class Comparison:
    """The Evidently snapshot (``save_html``, ``dict()``) and its summary."""

    snapshot: Any
    summary: DriftSummary


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    feature_names: Sequence[str],
    share_threshold: float = 0.5,
) -> Comparison:
    """Run Evidently on ``current`` against ``reference`` (both with every feature column
    and ``score``); see the module docstring."""
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = list(feature_names)
    missing = [c for c in [*features, SCORE_COLUMN] if c not in reference.columns]
    if missing:
        raise ValueError(f"the reference sample lacks the columns {', '.join(missing[:5])}")
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(
            f"cannot compare empty samples ({len(reference)} reference rows, "
            f"{len(current)} current rows)"
        )
    columns = [*features, SCORE_COLUMN]
    report = Report(
        [
            DataDriftPreset(columns=features, drift_share=share_threshold),
            ValueDrift(column=SCORE_COLUMN),
        ],
        include_tests=True,
    )
    with warnings.catch_warnings():  # constant columns make scipy warn; the verdict stands
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(current[columns], reference[columns])
    summary = summarize(snapshot.dict(), features, share_threshold, current, reference)
    return Comparison(snapshot, summary)


def summarize(
    document: dict[str, Any],
    features: Sequence[str],
    share_threshold: float,
    current: pd.DataFrame,
    reference: pd.DataFrame,
) -> DriftSummary:
    """Read each column's verdict from an Evidently snapshot's ``dict()``."""
    statistic: dict[str, tuple[str, float | None, float | None]] = {}
    for metric in document.get("metrics", []):
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift"):
            value = metric.get("value")
            statistic[config["column"]] = (
                str(config.get("method", "")),
                float(config["threshold"]) if config.get("threshold") is not None else None,
                float(value) if isinstance(value, int | float) else None,
            )
    verdict: dict[str, bool] = {}
    for test in document.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift") and "column" in params:
            verdict[params["column"]] = test.get("status") == "FAIL"
    absent = [c for c in [*features, SCORE_COLUMN] if c not in verdict or c not in statistic]
    if absent:
        raise RuntimeError(f"Evidently returned no drift test for {', '.join(absent[:5])}")

    def column(name: str) -> ColumnDrift:
        method, threshold, score = statistic[name]
        return ColumnDrift(name, method, threshold, score, verdict[name])

    per_feature = [column(name) for name in features]
    drifted = [c.column for c in per_feature if c.drifted]
    share = len(drifted) / len(per_feature) if per_feature else 0.0
    return DriftSummary(
        drift_share=share,
        dataset_drift=share >= share_threshold,
        drifted_features=drifted,
        features=per_feature,
        score=column(SCORE_COLUMN),
        share_threshold=share_threshold,
        rows_current=len(current),
        rows_reference=len(reference),
    )
