"""Every Prometheus metric churnstream exports, defined once.

Names follow ``churn_<component>_<what>_<unit>``. Each process serves only its own
component's metrics (plus the process and Python runtime ones), through
:func:`component_registry`: the worker on its web port, the API and the monitor on
``/metrics``. Dashboards and alerts refer to these names only.

Conventions that keep dashboards honest:

* labels with a known, closed set of values are created up front (at 0), so "nothing
  happened yet" reads as 0 rather than as no data;
* a gauge describing the latest result of a job (a drift report, a label join, a score
  bucket) reads NaN until that job has produced one, never a made-up 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

# --- worker ------------------------------------------------------------------------------

WORKER_EVENTS_CONSUMED = Counter(
    "churn_worker_events_consumed_total", "Messages read from the input topics.", ["topic"]
)
WORKER_EVENTS_APPLIED = Counter(
    "churn_worker_events_applied_total", "Valid events counted into customer aggregates."
)
WORKER_EVENTS_IGNORED = Counter(
    "churn_worker_events_ignored_total",
    "Valid events not counted: 'duplicate' (event id already counted), 'expired' "
    "(older than the retention), 'too_late' (beyond the dedup window, dead-lettered), "
    "'fenced' (offset already applied).",
    ["reason"],
)
WORKER_DLQ = Counter(
    "churn_worker_dlq_total", "Messages sent to the dead-letter topic, by reason.", ["reason"]
)
WORKER_BATCH_SIZE = Histogram(
    "churn_worker_batch_size_events",
    "Messages per micro-batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
WORKER_BATCH_SECONDS = Histogram(
    "churn_worker_batch_duration_seconds",
    "Time to apply, score and commit one micro-batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WORKER_LAG_SECONDS = Gauge(
    "churn_worker_lag_seconds",
    "Now minus the event time of the newest event applied in the last batch.",
)
WORKER_SCORES = Counter(
    "churn_worker_scores_total", "Scores written, by band.", ["band", "trigger"]
)
WORKER_BAND_CHANGES = Counter(
    "churn_worker_band_changes_total", "Band changes published to churn-scores."
)
WORKER_COMMIT_RETRIES = Counter(
    "churn_worker_commit_retries_total",
    "Batch commits retried after a Redis or Kafka failure.",
)
WORKER_MODEL_INFO = Gauge(
    "churn_worker_model_info", "1 for the model version the worker scores with.", ["version"]
)
WORKER_CUSTOMERS_CACHED = Gauge(
    "churn_worker_customers_cached", "Customers whose aggregates the worker holds in memory."
)
WORKER_OUTBOX_WAITING = Gauge(
    "churn_worker_outbox_waiting_entries",
    "Outbox entries (one batch's dead letters and band changes of one partition) the "
    "worker committed to Redis and has not published to Kafka yet; growing: publication "
    "is stuck.",
)

# --- api ---------------------------------------------------------------------------------

API_REQUESTS = Counter(
    "churn_api_requests_total",
    "HTTP requests answered by the API, by route template (e.g. /customers/{customer_id}/risk; "
    "'unmatched' for unknown paths), method and status code.",
    ["route", "method", "status"],
)
API_REQUEST_SECONDS = Histogram(
    "churn_api_request_duration_seconds",
    "Time to answer one HTTP request, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_SCORES = Counter(
    "churn_api_scores_total",
    "Scores served by the API (risk lookups, /score and each row of /score/batch), by band.",
    ["band"],
)

API_RISK_BATCH_SIZE = Histogram(
    "churn_api_risk_batch_customers",
    "Customers answered together by one batch of concurrent GET /customers/{id}/risk lookups "
    "(one Redis round trip and one feature evaluation each).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
API_MODEL_INFO = Gauge(
    "churn_api_model_info", "1 for the model version the API scores with.", ["version"]
)

# --- monitoring (churnstream monitor, churnstream drift) ------------------------------------

MONITOR_DRIFT_SHARE = Gauge(
    "churn_monitor_drift_share",
    "Share of the model's features that drifted in the latest drift report (0..1).",
)
MONITOR_DATASET_DRIFT = Gauge(
    "churn_monitor_dataset_drift",
    "1 when the latest drift report found dataset drift, else 0.",
)
MONITOR_SCORE_DRIFT = Gauge(
    "churn_monitor_score_drift",
    "1 when the latest drift report found the score distribution drifted, else 0.",
)
MONITOR_FEATURE_DRIFTED = Gauge(
    "churn_monitor_feature_drifted",
    "1 for each feature that drifted in the latest drift report, 0 for the others.",
    ["feature"],
)
MONITOR_DRIFT_RUNS = Counter(
    "churn_monitor_drift_runs_total",
    "Drift reports run, by result: 'drift', 'no_drift', 'skipped' (nothing to compare), 'error'.",
    ["result"],
)
MONITOR_DRIFT_SECONDS = Gauge(
    "churn_monitor_drift_duration_seconds", "Time the latest drift report took."
)
MONITOR_DRIFT_ROWS = Gauge(
    "churn_monitor_drift_rows", "Rows compared by the latest drift report.", ["sample"]
)
MONITOR_REALIZED_ROC_AUC = Gauge(
    "churn_monitor_realized_roc_auc",
    "ROC AUC of served scores against their outcomes, latest matured period.",
)
MONITOR_REALIZED_PR_AUC = Gauge(
    "churn_monitor_realized_pr_auc",
    "PR AUC (average precision) of served scores against outcomes, latest matured period.",
)
MONITOR_VALIDATION_ROC_AUC = Gauge(
    "churn_monitor_validation_roc_auc", "Validation ROC AUC recorded for the champion model."
)
MONITOR_AUC_DEGRADED = Gauge(
    "churn_monitor_auc_degraded",
    "1 when the realized ROC AUC is more than CHURN_AUC_DROP_THRESHOLD below validation.",
)
MONITOR_LABELLED_ROWS = Gauge(
    "churn_monitor_labelled_rows", "Scores joined with an outcome in the latest matured period."
)
MONITOR_MODEL_INFO = Gauge(
    "churn_monitor_model_info", "1 for the champion version the monitor compares with.", ["version"]
)
MONITOR_RETRAIN_REQUESTS = Counter(
    "churn_monitor_retrain_requests_total",
    "Retrain requests queued by the monitor's triggers, by trigger ('drift', 'auc_drop').",
    ["trigger"],
)
MONITOR_RETRAINS = Counter(
    "churn_monitor_retrains_total",
    "Retrains run, by outcome: 'promoted', 'kept_champion', 'failed'.",
    ["outcome"],
)
MONITOR_SCORE_SHIFT_ALERTS = Counter(
    "churn_monitor_score_shift_alerts_total",
    "Shifts in the live mean score detected by ADWIN between drift reports.",
)
MONITOR_SCORE_MEAN = Gauge(
    "churn_monitor_score_mean",
    "Mean of the scores written during the latest CHURN_SCORE_SHIFT_BUCKET_SECONDS.",
)
MONITOR_CUSTOMERS_BY_BAND = Gauge(
    "churn_monitor_customers_by_band",
    "Customers whose latest score falls in each band of the champion model.",
    ["band"],
)
MONITOR_CHALLENGER_ROC_AUC = Gauge(
    "churn_monitor_challenger_roc_auc",
    "Running (prequential) ROC AUC on matured labels, in shadow: the online challenger "
    "('challenger') and the champion on the same rows ('champion').",
    ["model"],
)
MONITOR_CHALLENGER_ROWS = Gauge(
    "churn_monitor_challenger_rows_learned", "Matured rows the online challenger learned from."
)
MONITOR_LAST_RUN = Gauge(
    "churn_monitor_last_run_timestamp_seconds",
    "When each monitoring job last finished (Unix time).",
    ["job"],
)

NOT_YET = float("nan")
for _latest_result in (
    MONITOR_DRIFT_SHARE,
    MONITOR_DATASET_DRIFT,
    MONITOR_SCORE_DRIFT,
    MONITOR_DRIFT_SECONDS,
    MONITOR_REALIZED_ROC_AUC,
    MONITOR_REALIZED_PR_AUC,
    MONITOR_VALIDATION_ROC_AUC,
    MONITOR_AUC_DEGRADED,
    MONITOR_SCORE_MEAN,
):
    _latest_result.set(NOT_YET)
for _result in ("drift", "no_drift", "skipped", "error"):
    MONITOR_DRIFT_RUNS.labels(_result)
for _trigger in ("drift", "auc_drop"):
    MONITOR_RETRAIN_REQUESTS.labels(_trigger)
for _outcome in ("promoted", "kept_champion", "failed"):
    MONITOR_RETRAINS.labels(_outcome)

Component = Literal["worker", "api", "monitor"]


class _ComponentMetrics:
    """A collector showing one component's ``churn_<component>_*`` families of the default
    registry, and every family that is not churnstream's (process, Python runtime)."""

    def __init__(self, component: Component) -> None:
        self.prefix = f"churn_{component}_"

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name.startswith(self.prefix) or not family.name.startswith("churn_"):
                yield family


@cache
def component_registry(component: Component) -> CollectorRegistry:
    """What the ``/metrics`` page of ``component`` serves (pass it to ``generate_latest``).

    Every process imports this module, so every metric exists in every process; serving
    them all would show, say, a drift share of 0 from the API next to the monitor's real one.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ComponentMetrics(component))
    return registry


_API_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_api_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency under the route's template."""
    key = (route, method, status)
    series = _API_REQUEST_SERIES.get(key)
    if series is None:  # labels are route templates: a bounded set
        series = (
            API_REQUESTS.labels(route, method, str(status)),
            API_REQUEST_SECONDS.labels(route),
        )
        _API_REQUEST_SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


_API_SCORES_BY_BAND: dict[str, Counter] = {}


def count_api_scores(band: str, n: int = 1) -> None:
    """Count ``n`` scores served in ``band``."""
    series = _API_SCORES_BY_BAND.get(band)
    if series is None:
        series = _API_SCORES_BY_BAND[band] = API_SCORES.labels(band)
    series.inc(n)
