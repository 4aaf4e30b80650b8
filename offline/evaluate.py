"""How a churn model is measured on its validation rows, and how its risk bands are cut.

All metrics treat label 1 as "churned" and a higher score as more at risk:

* ``roc_auc``, ``pr_auc`` (average precision), ``brier`` (mean squared error of the
  probabilities; lower is better), ``log_loss``;
* at the decision ``threshold`` (the High band's cut-off: the customers a team would act
  on): ``precision``, ``recall``, ``f1`` and the confusion matrix (``tp``, ``fp``, ``tn``,
  ``fn``);
* ``top_decile_lift``: churn rate among the 10 % highest scores / the base rate;
* ``calibration_error``: the mean |churn rate - mean score| over ten equal-count score bins,
  weighted by size (0 for perfectly calibrated probabilities);
* ``roc_auc_by_cutoff``: ROC AUC of each validation cutoff on its own (ISO date -> AUC).

Bands come from a :class:`BandPolicy` applied to the validation scores: by default the top
10 % are High and the next 20 % Medium.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from core.model import BandCutoffs


@dataclass(frozen=True)
class BandPolicy:
    """Share of validation rows in the High band and in the Medium band (just below it).

    >>> BandPolicy(high_share=0.1, medium_share=0.2).cutoffs(np.arange(101) / 100)
    BandCutoffs(medium=0.7, high=0.9)
    """

    high_share: float = 0.10
    medium_share: float = 0.20

    def __post_init__(self) -> None:
        if not 0 < self.high_share < 1 or not 0 <= self.medium_share < 1:
            raise ValueError("band shares must be between 0 and 1")
        if self.high_share + self.medium_share >= 1:
            raise ValueError("the High and Medium shares must leave some rows Low")

    def cutoffs(self, scores: np.ndarray) -> BandCutoffs:
        """Cut-offs putting ``high_share`` of ``scores`` in High and ``medium_share`` in Medium."""
        high_q = 1.0 - self.high_share
        medium_q = high_q - self.medium_share
        medium, high = np.quantile(scores, [medium_q, high_q]).tolist()
        return BandCutoffs(medium=round(float(medium), 6), high=round(float(max(high, medium)), 6))

    def describe(self) -> str:
        return (
            f"top {self.high_share:.0%} of validation scores = High, "
            f"next {self.medium_share:.0%} = Medium"
        )


def top_decile_lift(y: np.ndarray, scores: np.ndarray) -> float:
    """Churn rate among the highest-scored 10 % of rows / the overall churn rate.

    >>> top_decile_lift(np.array([1, 1] + [0] * 18), np.arange(20)[::-1] / 20)
    10.0
    """
    base = float(y.mean())
    if base == 0.0 or len(y) == 0:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[: max(1, len(y) // 10)]
    return round(float(y[top].mean()) / base, 4)


def calibration_error(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Size-weighted mean |observed rate - mean score| over equal-count score bins."""
    if len(y) == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(y))):
        total += len(chunk) * abs(float(y[chunk].mean()) - float(scores[chunk].mean()))
    return round(total / len(y), 6)


def classification_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float, cutoffs: np.ndarray | None = None
) -> dict[str, Any]:
    """Every validation metric (see the module docstring) of ``scores`` against ``y``."""
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    both = 0 < int(y.sum()) < len(y)
    flagged = scores >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    nan = float("nan")
    metrics: dict[str, Any] = {
        "roc_auc": round(float(roc_auc_score(y, scores)), 6) if both else nan,
        "pr_auc": round(float(average_precision_score(y, scores)), 6) if both else nan,
        "brier": round(float(brier_score_loss(y, scores)), 6),
        "log_loss": round(float(log_loss(y, np.clip(scores, 1e-9, 1 - 1e-9), labels=[0, 1])), 6),
        "calibration_error": calibration_error(y, scores),
        "base_rate": round(float(y.mean()), 6) if len(y) else nan,
        "rows": len(y),
        "threshold": round(float(threshold), 6),
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "top_decile_lift": top_decile_lift(y, scores),
    }
    if cutoffs is not None:
        metrics["roc_auc_by_cutoff"] = roc_auc_by_cutoff(y, scores, cutoffs)
    return metrics


def roc_auc_by_cutoff(y: np.ndarray, scores: np.ndarray, cutoffs: np.ndarray) -> dict[str, float]:
    """ROC AUC of each cutoff's rows (cutoffs in epoch seconds) keyed by UTC ISO date."""
    out: dict[str, float] = {}
    for cut in np.unique(cutoffs).tolist():
        rows = cutoffs == cut
        label = datetime.fromtimestamp(int(cut), UTC).date().isoformat()
        both = 0 < int(y[rows].sum()) < int(rows.sum())
        out[label] = round(float(roc_auc_score(y[rows], scores[rows])), 6) if both else float("nan")
    return out


def band_rates(y: np.ndarray, scores: np.ndarray, bands: BandCutoffs) -> dict[str, float]:
    """Churn rate and share of rows in each band."""
    high = scores >= bands.high
    medium = (scores >= bands.medium) & ~high
    low = ~(high | medium)
    out: dict[str, float] = {}
    for name, rows in (("high", high), ("medium", medium), ("low", low)):
        out[f"{name}_band_rate"] = round(float(y[rows].mean()), 6) if rows.any() else 0.0
        out[f"{name}_band_share"] = round(float(rows.mean()), 6) if len(rows) else 0.0
    return out
