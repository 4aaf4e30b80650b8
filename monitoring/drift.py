"""The drift job: live features of recently scored customers against the champion's
reference sample, with Evidently; one saved report per run.

:func:`run_drift` reads the champion pointer and its reference sample from the registry,
samples the live side from Redis (:mod:`monitoring.sample`), compares them
(:mod:`monitoring.compare`), saves the HTML page and a JSON document under
``CHURN_REPORTS_DIR`` with the index the API serves (:mod:`monitoring.reports`), and sets
the drift gauges of :mod:`core.metrics`.

The page stays under ``CHURN_DRIFT_HTML_MAX_BYTES``: when it comes out larger, the
comparison is redone on half as many rows of each sample (seeded), until it fits.

Times: ``now`` and ``as_of`` are epoch seconds (UTC). Features are computed at ``as_of``,
by default the scoring clock (now, or ``CHURN_AS_OF`` when set, as the worker and the API
use); customers scored within the ``CHURN_DRIFT_RECENT_SECONDS`` before the earlier of
``now`` and ``as_of`` are sampled. A run that has nothing to compare (no champion, no reference
sample, no recently scored customer) is *skipped*: it returns an outcome saying why and
writes no report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from core import metrics
from core.keys import Keys
from core.registry import ModelRegistry
from core.settings import Settings, scoring_clock
from core.store import FeatureStore
from monitoring.compare import Comparison, DriftSummary, compare
from monitoring.reports import ReportStore, SavedReport
from monitoring.sample import live_sample

log = logging.getLogger(__name__)

MIN_ROWS = 20  # fewer rows on either side is no basis for a verdict


@dataclass
class DriftOutcome:
    """What one run of the drift job did. ``skipped`` says why no report was written."""

    model_version: str | None
    summary: DriftSummary | None = None
    report: SavedReport | None = None
    skipped: str | None = None
    seconds: float = 0.0
    sample: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``churnstream drift --json`` prints)."""
        document: dict[str, Any] = {
            "model_version": self.model_version,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "sample": self.sample,
        }
        if self.summary is not None:
            summary = self.summary.as_dict()
            document.update(
                drift_share=summary["drift_share"],
                dataset_drift=summary["dataset_drift"],
                drifted_features=summary["drifted_features"],
                score_drifted=summary["score_drifted"],
                share_threshold=summary["share_threshold"],
                rows_current=summary["rows_current"],
                rows_reference=summary["rows_reference"],
                features=summary["features"],
                score=summary["score"],
            )
        if self.report is not None:
            document["report"] = {
                **self.report.entry,
                "html_path": str(self.report.html_path),
                "json_path": str(self.report.json_path),
                "html_bytes": self.report.html_bytes,
            }
        return document


def _halve(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    return frame.sample(n=max(len(frame) // 2, 1), random_state=seed).reset_index(drop=True)


def compare_within(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    feature_names: list[str],
    share_threshold: float,
    max_html_bytes: int,
    scratch: Path,
    seed: int = 0,
) -> tuple[Comparison, int]:
    """Compare, halving both samples until the HTML page fits ``max_html_bytes``. Returns
    the comparison and the size of its page (written once to ``scratch`` to measure it)."""
    while True:
        comparison = compare(reference, current, feature_names, share_threshold)
        comparison.snapshot.save_html(str(scratch))
        size = scratch.stat().st_size
        if size <= max_html_bytes:
            return comparison, size
        if len(current) <= MIN_ROWS and len(reference) <= MIN_ROWS:
            raise RuntimeError(
                f"the drift report page is {size:,} bytes even on {len(current)} rows, over "
                f"CHURN_DRIFT_HTML_MAX_BYTES={max_html_bytes:,}"
            )
        log.info(
            "drift report page too large, halving the samples bytes=%d current_rows=%d "
            "reference_rows=%d",
            size,
            len(current),
            len(reference),
        )
        if len(current) > MIN_ROWS:
            current = _halve(current, seed)
        if len(reference) > MIN_ROWS:
            reference = _halve(reference, seed)


def run_drift(
    settings: Settings,
    client: redis.Redis,
    *,
    now: float | None = None,
    as_of: float | None = None,
    seed: int | None = None,
) -> DriftOutcome:
    """Run the drift job once (see the module docstring)."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    as_of = scoring_clock(settings)() if as_of is None else as_of
    seed = int(now) if seed is None else seed
    registry = ModelRegistry(settings, client)
    pointer = registry.champion()
    if pointer is None:
        return _skipped(None, "no champion model has been promoted", started)
    model = registry.load_champion() or registry.load(pointer.version)
    reference = registry.reference_sample(pointer.version)
    if reference is None:
        return _skipped(pointer.version, "the champion has no reference sample", started)
    store = FeatureStore(client, Keys.of(settings))
    live = live_sample(
        store,
        model,
        since=min(now, as_of) - settings.drift_recent_seconds,
        as_of=as_of,
        size=settings.drift_sample_size,
        seed=seed,
    )
    sample = {
        "as_of": datetime.fromtimestamp(as_of, UTC).isoformat().replace("+00:00", "Z"),
        "recent_customers": live.recent_customers,
        "sampled": live.sampled,
        "excluded": live.excluded,
        "rows": len(live.frame),
    }
    if len(live.frame) < MIN_ROWS:
        outcome = _skipped(
            pointer.version,
            f"only {len(live.frame)} recently scored customers to compare "
            f"(at least {MIN_ROWS} needed)",
            started,
        )
        outcome.sample = sample
        return outcome

    reports = ReportStore(settings.reports_dir, keep=settings.reports_keep)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    scratch = settings.reports_dir / f".scratch-{seed}-{time.monotonic_ns()}.html"
    try:
        comparison, _ = compare_within(
            reference,
            live.frame,
            list(model.feature_names),
            settings.drift_share_threshold,
            settings.drift_html_max_bytes,
            scratch,
            seed,
        )
        summary = comparison.summary
        created = datetime.fromtimestamp(now, UTC)
        saved = reports.save(
            created,
            lambda path: scratch.replace(path),
            {
                "created_at": created.isoformat().replace("+00:00", "Z"),
                "model_version": pointer.version,
                "sample": sample,
                "summary": summary.as_dict(),
                "evidently": comparison.snapshot.dict(),
            },
            {
                "drift_share": round(summary.drift_share, 6),
                "dataset_drift": summary.dataset_drift,
                "drifted_features": summary.drifted_features,
                "score_drifted": summary.score.drifted if summary.score else None,
                "model_version": pointer.version,
                "rows_current": summary.rows_current,
                "rows_reference": summary.rows_reference,
            },
        )
    finally:
        scratch.unlink(missing_ok=True)
    outcome = DriftOutcome(
        pointer.version,
        summary=summary,
        report=saved,
        seconds=time.perf_counter() - started,
        sample=sample,
    )
    _observe(outcome)
    log.info(
        "drift report written id=%s drift_share=%.3f dataset_drift=%s drifted=%s "
        "score_drifted=%s rows=%d seconds=%.1f",
        saved.entry["id"],
        summary.drift_share,
        summary.dataset_drift,
        ",".join(summary.drifted_features) or "-",
        summary.score.drifted if summary.score else None,
        summary.rows_current,
        outcome.seconds,
    )
    return outcome


def _skipped(version: str | None, why: str, started: float) -> DriftOutcome:
    log.warning("drift report skipped reason=%s", why)
    metrics.MONITOR_DRIFT_RUNS.labels("skipped").inc()
    return DriftOutcome(version, skipped=why, seconds=time.perf_counter() - started)


def _observe(outcome: DriftOutcome) -> None:
    summary = outcome.summary
    assert summary is not None
    metrics.MONITOR_DRIFT_SHARE.set(summary.drift_share)
    metrics.MONITOR_DATASET_DRIFT.set(1 if summary.dataset_drift else 0)
    metrics.MONITOR_SCORE_DRIFT.set(1 if summary.score and summary.score.drifted else 0)
    for column in summary.features:
        metrics.MONITOR_FEATURE_DRIFTED.labels(column.column).set(1 if column.drifted else 0)
    metrics.MONITOR_DRIFT_RUNS.labels("drift" if summary.dataset_drift else "no_drift").inc()
    metrics.MONITOR_DRIFT_SECONDS.set(outcome.seconds)
    metrics.MONITOR_DRIFT_ROWS.labels("current").set(summary.rows_current)
    metrics.MONITOR_DRIFT_ROWS.labels("reference").set(summary.rows_reference)
    metrics.MONITOR_LAST_RUN.labels("drift").set(time.time())
