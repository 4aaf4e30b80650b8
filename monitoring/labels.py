"""Performance on delayed labels: served scores, joined with what happened next.

**Score log.** Every ``CHURN_SCORE_LOG_EVERY_SECONDS`` the monitor snapshots the score it
serves for every customer (the ``risk`` index, the ``scored_at`` index and each customer's
``model_version``) into ``CHURN_SCORE_LOG_DIR/scores-<UTC time>.parquet`` (columns
``customer_id``, ``score``, ``model_version``, ``scored_at``). The snapshot time ``c`` is
the period's cutoff.

**Label join.** Once ``c + horizon`` has passed (``horizon``: the champion's
``training.horizon_days``, else ``CHURN_LABEL_HORIZON_DAYS``), the period is *matured* and
its outcomes are read from the event archive exactly as the training labels are defined
(:mod:`offline.dataset`): customers with a ``cancellation`` before ``c`` are left out;
the label is 1 when the customer cancelled in ``(c, c + horizon]`` or had no event at all
in it (``cancellation_or_inactivity``; ``cancellation`` and ``inactivity`` use one
half). Realized ROC AUC and PR AUC (average precision) of the logged scores against those
labels are computed per period and stored in ``CHURN_SCORE_LOG_DIR/performance.json``
(oldest first), with the validation ROC AUC of the model that served most of the period's
scores, and ``degraded`` when the realized ROC AUC is more than
``CHURN_AUC_DROP_THRESHOLD`` (a share) below it.

Times are UTC; epoch seconds in the Parquet files.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import average_precision_score, roc_auc_score

from core.archive import EventArchive
from core.files import read_json_objects, write_atomic
from core.store import FeatureStore

log = logging.getLogger(__name__)

PREFIX = "scores-"
PERFORMANCE_FILE = "performance.json"
LABELS = ("cancellation", "inactivity", "cancellation_or_inactivity")


def snapshot_name(at: datetime) -> str:
    """The file name of a snapshot taken at ``at``.

    >>> snapshot_name(datetime(2026, 3, 1, tzinfo=UTC))
    'scores-20260301T000000Z.parquet'
    """
    return f"{PREFIX}{at.astimezone(UTC):%Y%m%dT%H%M%SZ}.parquet"


def snapshot_time(path: Path) -> datetime:
    """The time a snapshot file was taken (from its name)."""
    stem = path.name.removeprefix(PREFIX).removesuffix(".parquet")
    return datetime.strptime(stem, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class PeriodPerformance:
    """Realized performance of the scores logged at ``cutoff`` (UTC ISO 8601)."""

    period: str
    cutoff: str
    horizon_days: int
    label: str
    rows: int
    positives: int
    roc_auc: float | None
    pr_auc: float | None
    model_version: str | None
    model_versions: dict[str, int]
    validation_roc_auc: float | None
    degraded: bool
    evaluated_at: str


class ScoreLog:
    """Score snapshots and their realized performance, under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # --- snapshots ---------------------------------------------------------------------

    def snapshots(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{PREFIX}*.parquet"))

    def latest_time(self) -> datetime | None:
        found = self.snapshots()
        return snapshot_time(found[-1]) if found else None

    def due(self, now: datetime, every_seconds: float) -> bool:
        """True when no snapshot was taken in the last ``every_seconds``."""
        latest = self.latest_time()
        return latest is None or (now - latest).total_seconds() >= every_seconds

    def snapshot(self, store: FeatureStore, at: datetime) -> Path | None:
        """Log every customer's served score as of now, stamped ``at``; ``None`` when no
        customer has a score yet."""
        pairs = store.scores.all_scores()
        if not pairs:
            return None
        ids = [member.decode() for member, _ in pairs]
        scored_at = store.scores.scored_at_of(ids)
        versions = [version or "" for version in store.scores.model_versions(ids)]
        frame = pd.DataFrame(
            {
                "customer_id": ids,
                "score": [score for _, score in pairs],
                "model_version": versions,
                "scored_at": [float("nan") if t is None else t for t in scored_at],
            }
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / snapshot_name(at)
        write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))
        log.info("scores logged path=%s customers=%d", path, len(frame))
        return path

    # --- performance -------------------------------------------------------------------

    def performance(self) -> list[dict[str, Any]]:
        """Every evaluated period, oldest first."""
        return read_json_objects(self.directory / PERFORMANCE_FILE)

    def _save_performance(self, periods: list[dict[str, Any]]) -> None:
        text = json.dumps(periods, indent=1)
        write_atomic(
            self.directory / PERFORMANCE_FILE, lambda temp: temp.write_text(text, encoding="utf-8")
        )

    def evaluate_matured(
        self,
        archive: EventArchive,
        now: datetime,
        horizon_days: int,
        validation_auc_of: dict[str, float],
        drop_threshold: float,
        label: str = "cancellation_or_inactivity",
    ) -> list[PeriodPerformance]:
        """Evaluate every logged period whose horizon has passed by ``now`` and that was not
        evaluated yet; return the new results (also appended to ``performance.json``).
        ``validation_auc_of`` maps model versions to their validation ROC AUC."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
        done = {p.get("period") for p in self.performance()}
        fresh: list[PeriodPerformance] = []
        for path in self.snapshots():
            cutoff = snapshot_time(path)
            if path.name in done or cutoff + timedelta(days=horizon_days) > now:
                continue
            result = evaluate_period(
                pd.read_parquet(path),
                archive,
                cutoff,
                horizon_days,
                label,
                validation_auc_of,
                drop_threshold,
                period=path.name,
                now=now,
            )
            fresh.append(result)
            log.info(
                "realized performance period=%s rows=%d positives=%d roc_auc=%s pr_auc=%s "
                "validation_roc_auc=%s degraded=%s",
                result.period,
                result.rows,
                result.positives,
                result.roc_auc,
                result.pr_auc,
                result.validation_roc_auc,
                result.degraded,
            )
        if fresh:
            self._save_performance(self.performance() + [asdict(p) for p in fresh])
        return fresh


def outcomes(
    archive: EventArchive,
    customer_ids: list[str],
    cutoff: datetime,
    horizon_days: int,
    label: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(in population, label) for each customer: in population when they had no
    ``cancellation`` before ``cutoff``; the label from ``(cutoff, cutoff + horizon]``
    (see the module docstring)."""
    end = cutoff + timedelta(days=horizon_days)
    before = archive.frame(end=cutoff, columns=("customer_id", "type"))
    cancelled_before = set(
        before.filter(pc.equal(before["type"], "cancellation"))["customer_id"].to_pylist()
    )
    after = archive.frame(
        start=cutoff,
        end=end + timedelta(microseconds=1),
        columns=("customer_id", "type", "event_time"),
    )
    if after.num_rows:  # the window is (cutoff, end]: an event at the cutoff is in neither
        after = after.filter(
            pc.greater(after["event_time"], pa.scalar(cutoff, pa.timestamp("us", "UTC")))
        )
    seen = set(after["customer_id"].to_pylist())
    cancelled = set(
        after.filter(pc.equal(after["type"], "cancellation"))["customer_id"].to_pylist()
    )
    in_population = np.array([c not in cancelled_before for c in customer_ids], dtype=bool)
    cancel = np.array([c in cancelled for c in customer_ids], dtype=bool)
    inactive = np.array([c not in seen for c in customer_ids], dtype=bool)
    if label == "cancellation":
        y = cancel
    elif label == "inactivity":
        y = inactive
    else:
        y = cancel | inactive
    return in_population, y.astype(np.int8)


def evaluate_period(
    scores: pd.DataFrame,
    archive: EventArchive,
    cutoff: datetime,
    horizon_days: int,
    label: str,
    validation_auc_of: dict[str, float],
    drop_threshold: float,
    period: str,
    now: datetime,
) -> PeriodPerformance:
    """The realized performance of one snapshot (see the module docstring)."""
    ids = scores["customer_id"].astype(str).tolist()
    keep, y = outcomes(archive, ids, cutoff, horizon_days, label)
    served = scores["score"].to_numpy(dtype=np.float64)[keep]
    y = y[keep]
    versions = Counter(scores["model_version"].astype(str)[keep].tolist())
    main = versions.most_common(1)[0][0] if versions else None
    positives = int(y.sum())
    roc = pr = None
    if 0 < positives < len(y):
        roc = float(roc_auc_score(y, served))
        pr = float(average_precision_score(y, served))
    validation = validation_auc_of.get(main) if main else None
    degraded = (
        roc is not None
        and validation is not None
        and math.isfinite(validation)
        and roc < validation * (1.0 - drop_threshold)
    )
    return PeriodPerformance(
        period=period,
        cutoff=cutoff.isoformat().replace("+00:00", "Z"),
        horizon_days=horizon_days,
        label=label,
        rows=len(y),
        positives=positives,
        roc_auc=roc,
        pr_auc=pr,
        model_version=main,
        model_versions=dict(versions),
        validation_roc_auc=validation,
        degraded=bool(degraded),
        evaluated_at=now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
