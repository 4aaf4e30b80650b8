"""Every Prometheus metric churnstream exports, defined once.

Names follow ``churn_<component>_<what>_<unit>``. The worker serves them on its web port
(``/metrics``); the API on ``/metrics``. Dashboards and alerts refer to these names only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    "(older than the retention), 'fenced' (offset already applied).",
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
API_MODEL_INFO = Gauge(
    "churn_api_model_info", "1 for the model version the API scores with.", ["version"]
)
