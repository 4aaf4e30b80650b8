"""Settings of monitoring: drift reports, delayed-label performance and retraining,
part of :class:`core.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from core.settings_base import EnvSettings, setting

DEFAULT_REPORTS_DIR = Path("reports/drift")


class MonitoringSettings(EnvSettings):
    """Drift reports, the score log, the score-shift detector and the retrain trigger."""

    # --- Monitoring: drift, delayed labels, retraining ---------------------------------
    reports_dir: Path = setting("CHURN_REPORTS_DIR", DEFAULT_REPORTS_DIR)
    """Directory of the drift reports (index.json and the HTML pages)."""
    reports_keep: int = setting("CHURN_REPORTS_KEEP", 50, ge=1, le=10_000)
    """Drift reports kept in CHURN_REPORTS_DIR; older ones are deleted."""
    drift_sample_size: int = setting("CHURN_DRIFT_SAMPLE_SIZE", 10_000, ge=50, le=1_000_000)
    """Most recently scored customers sampled for a drift report."""
    drift_recent_seconds: int = setting("CHURN_DRIFT_RECENT_SECONDS", 86_400, ge=60)
    """A drift report samples customers scored within this many seconds."""
    drift_share_threshold: float = setting("CHURN_DRIFT_SHARE_THRESHOLD", 0.5, gt=0, le=1)
    """Dataset drift when at least this share of the features drifted (Evidently's rule; 0.5 is its
    default)."""
    drift_html_max_bytes: int = setting("CHURN_DRIFT_HTML_MAX_BYTES", 10_000_000, ge=1_000_000)
    """Largest drift report page; a larger one is redone on a smaller sample."""
    monitor_interval_seconds: float = setting("CHURN_MONITOR_INTERVAL_SECONDS", 3600.0, gt=0)
    """How often `churnstream monitor` runs the drift report and the label join."""
    monitor_metrics_host: str = setting("CHURN_MONITOR_METRICS_HOST", "127.0.0.1")
    """Address `churnstream monitor`'s /metrics page binds to (0.0.0.0 in containers)."""
    monitor_metrics_port: int = setting("CHURN_MONITOR_METRICS_PORT", 6067, ge=0, le=65535)
    """Port of `churnstream monitor`'s /metrics page (0: none)."""
    score_shift_bucket_seconds: float = setting("CHURN_SCORE_SHIFT_BUCKET_SECONDS", 60.0, gt=0)
    """The score-shift detector (ADWIN) reads the mean score of each bucket of this many seconds."""
    score_shift_delta: float = setting("CHURN_SCORE_SHIFT_DELTA", 0.002, gt=0, lt=1)
    """ADWIN's confidence parameter: smaller means fewer, surer alerts."""
    score_log_dir: Path = setting("CHURN_SCORE_LOG_DIR", Path("score-log"))
    """Where the monitor keeps snapshots of served scores for the label join."""
    score_log_every_seconds: int = setting("CHURN_SCORE_LOG_EVERY_SECONDS", 86_400, ge=60)
    """How often the monitor snapshots every customer's served score."""
    label_horizon_days: int = setting("CHURN_LABEL_HORIZON_DAYS", 14, ge=1, le=365)
    """Days after a score in which its outcome is observed (when the model does not record its own
    label horizon)."""
    auc_drop_threshold: float = setting("CHURN_AUC_DROP_THRESHOLD", 0.05, gt=0, lt=1)
    """Retrain when the realized ROC AUC falls more than this share below the model's validation ROC
    AUC."""
    retrain_on_drift: bool = setting("CHURN_RETRAIN_ON_DRIFT", True)
    """Request a retrain when a drift report finds dataset drift."""
    retrain_cooldown_seconds: int = setting("CHURN_RETRAIN_COOLDOWN_SECONDS", 86_400, ge=0)
    """After a retrain request, triggers wait this long before requesting another (manual requests
    always go through)."""
    retrain_window_days: int = setting("CHURN_RETRAIN_WINDOW_DAYS", 120, ge=30, le=3650)
    """A retrain's training and validation cutoffs lie within the last this-many days (its features
    also read the 90 days before the first cutoff)."""
    promotion_min_gain: float = setting("CHURN_PROMOTION_MIN_GAIN", 0.0, ge=0, lt=1)
    """A retrained model replaces the champion only when its ROC AUC on the same recent validation
    rows is higher by more than this."""
