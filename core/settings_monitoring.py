"""Settings of monitoring: drift reports, delayed-label performance and retraining,
part of :class:`core.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings_base import EnvSettings, env

DEFAULT_REPORTS_DIR = Path("reports/drift")


class MonitoringSettings(EnvSettings):
    """Drift reports, the score log, the score-shift detector and the retrain trigger."""

    # --- Monitoring: drift, delayed labels, retraining ---------------------------------
    reports_dir: Path = Field(
        DEFAULT_REPORTS_DIR,
        validation_alias=env("CHURN_REPORTS_DIR"),
        description="Directory of the drift reports (index.json and the HTML pages).",
    )
    reports_keep: int = Field(
        50,
        ge=1,
        le=10_000,
        validation_alias=env("CHURN_REPORTS_KEEP"),
        description="Drift reports kept in CHURN_REPORTS_DIR; older ones are deleted.",
    )
    drift_sample_size: int = Field(
        10_000,
        ge=50,
        le=1_000_000,
        validation_alias=env("CHURN_DRIFT_SAMPLE_SIZE"),
        description="Most recently scored customers sampled for a drift report.",
    )
    drift_recent_seconds: int = Field(
        86_400,
        ge=60,
        validation_alias=env("CHURN_DRIFT_RECENT_SECONDS"),
        description="A drift report samples customers scored within this many seconds.",
    )
    drift_share_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        validation_alias=env("CHURN_DRIFT_SHARE_THRESHOLD"),
        description="Dataset drift when at least this share of the features drifted "
        "(Evidently's rule; 0.5 is its default).",
    )
    drift_html_max_bytes: int = Field(
        10_000_000,
        ge=1_000_000,
        validation_alias=env("CHURN_DRIFT_HTML_MAX_BYTES"),
        description="Largest drift report page; a larger one is redone on a smaller sample.",
    )
    monitor_interval_seconds: float = Field(
        3600.0,
        gt=0,
        validation_alias=env("CHURN_MONITOR_INTERVAL_SECONDS"),
        description="How often `churnstream monitor` runs the drift report and the label join.",
    )
    monitor_metrics_host: str = Field(
        "127.0.0.1",
        validation_alias=env("CHURN_MONITOR_METRICS_HOST"),
        description="Address `churnstream monitor`'s /metrics page binds to (0.0.0.0 in "
        "containers).",
    )
    monitor_metrics_port: int = Field(
        6067,
        ge=0,
        le=65535,
        validation_alias=env("CHURN_MONITOR_METRICS_PORT"),
        description="Port of `churnstream monitor`'s /metrics page (0: none).",
    )
    score_shift_bucket_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=env("CHURN_SCORE_SHIFT_BUCKET_SECONDS"),
        description="The score-shift detector (ADWIN) reads the mean score of each bucket "
        "of this many seconds.",
    )
    score_shift_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        validation_alias=env("CHURN_SCORE_SHIFT_DELTA"),
        description="ADWIN's confidence parameter: smaller means fewer, surer alerts.",
    )
    score_log_dir: Path = Field(
        Path("score-log"),
        validation_alias=env("CHURN_SCORE_LOG_DIR"),
        description="Where the monitor keeps snapshots of served scores for the label join.",
    )
    score_log_every_seconds: int = Field(
        86_400,
        ge=60,
        validation_alias=env("CHURN_SCORE_LOG_EVERY_SECONDS"),
        description="How often the monitor snapshots every customer's served score.",
    )
    label_horizon_days: int = Field(
        14,
        ge=1,
        le=365,
        validation_alias=env("CHURN_LABEL_HORIZON_DAYS"),
        description="Days after a score in which its outcome is observed (when the model "
        "does not record its own label horizon).",
    )
    auc_drop_threshold: float = Field(
        0.05,
        gt=0,
        lt=1,
        validation_alias=env("CHURN_AUC_DROP_THRESHOLD"),
        description="Retrain when the realized ROC AUC falls more than this share below "
        "the model's validation ROC AUC.",
    )
    retrain_on_drift: bool = Field(
        True,
        validation_alias=env("CHURN_RETRAIN_ON_DRIFT"),
        description="Request a retrain when a drift report finds dataset drift.",
    )
    retrain_cooldown_seconds: int = Field(
        86_400,
        ge=0,
        validation_alias=env("CHURN_RETRAIN_COOLDOWN_SECONDS"),
        description="After a retrain request, triggers wait this long before requesting "
        "another (manual requests always go through).",
    )
    retrain_window_days: int = Field(
        120,
        ge=30,
        le=3650,
        validation_alias=env("CHURN_RETRAIN_WINDOW_DAYS"),
        description="A retrain's training and validation cutoffs lie within the last "
        "this-many days (its features also read the 90 days before the first cutoff).",
    )
    promotion_min_gain: float = Field(
        0.0,
        ge=0,
        lt=1,
        validation_alias=env("CHURN_PROMOTION_MIN_GAIN"),
        description="A retrained model replaces the champion only when its ROC AUC on the "
        "same recent validation rows is higher by more than this.",
    )
