"""Prometheus alerting rules for the churnstream processes.

What an on-call engineer is paged or warned about: a process that stopped answering, a
worker that fell behind or cannot publish, commits that keep failing, a rising share of
dead letters, API errors and slow answers, a model whose realized quality dropped and
monitoring jobs that stopped running. Each rule names its metrics through
:mod:`core.metrics` and its jobs through :mod:`churnstream.infra.prometheus`, so a
renamed metric or job cannot leave a rule watching nothing.

The rules are written next to each Prometheus configuration that loads them:
``monitoring/prometheus/alerts.yml`` for the docker-compose stack (by ``make docs``) and
``<run_dir>/prometheus/alerts.yml`` for ``churnstream infra up --prometheus``. Routing
the alerts (Alertmanager, e-mail, chat) is left to the deployment: the ``severity`` label
says whom to wake (``critical``) and what can wait for working hours (``warning``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from churnstream.infra.prometheus import API_JOB, MONITOR_JOB, WORKER_JOB
from core import metrics

GROUP = "churnstream"

# Thresholds. Each rule's description says what crossing it means.
WORKER_LAG_SECONDS = 900  # the newest event applied is older than this (not during a replay)
OUTBOX_WAITING_ENTRIES = 100  # normal: at most one or two per partition in flight
COMMIT_RETRIES = 5  # in 10 minutes
DEAD_LETTER_SHARE = 0.01  # of the messages read, over 15 minutes
API_ERROR_SHARE = 0.05  # of the requests answered, over 5 minutes
API_P99_SECONDS = 0.25  # per route, over 5 minutes
MONITOR_MISSED_RUNS = 3  # monitoring jobs not finished for this many intervals


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule: fires when ``expr`` has held for ``for_``."""

    name: str
    expr: str
    for_: str
    severity: str  # "critical" (page) or "warning" (working hours)
    summary: str
    description: str


def series(metric: MetricWrapperBase, suffix: str = "") -> str:
    """The name of one of ``metric``'s series (``suffix``: ``_total``, ``_bucket``, ...).

    >>> series(metrics.WORKER_DLQ, "_total")
    'churn_worker_dlq_total'
    """
    [family] = metric.describe()
    return family.name + suffix


def alert_rules(monitor_interval_seconds: float = 3600.0) -> tuple[AlertRule, ...]:
    """Every rule; ``monitor_interval_seconds`` is ``CHURN_MONITOR_INTERVAL_SECONDS`` (the
    monitoring jobs' period)."""
    dlq = series(metrics.WORKER_DLQ, "_total")
    consumed = series(metrics.WORKER_EVENTS_CONSUMED, "_total")
    requests = series(metrics.API_REQUESTS, "_total")
    durations = series(metrics.API_REQUEST_SECONDS, "_bucket")
    stale_after = round(MONITOR_MISSED_RUNS * monitor_interval_seconds)
    return (
        AlertRule(
            "ChurnWorkerDown",
            f'up{{job="{WORKER_JOB}"}} == 0',
            "2m",
            "critical",
            "The churnstream worker is not answering Prometheus.",
            "Scores no longer follow customers' events. Check the process (`churnstream "
            "worker` logs, /health on CHURN_WORKER_WEB_PORT) and whether it can reach Kafka "
            "and Redis. Events wait in Kafka and are applied once it is back.",
        ),
        AlertRule(
            "ChurnApiDown",
            f'up{{job="{API_JOB}"}} == 0',
            "2m",
            "critical",
            "The churnstream API is not answering Prometheus.",
            "Risk lookups, the at-risk list and the dashboard are unavailable. Check the "
            "API process and /ready (it says which dependency is missing).",
        ),
        AlertRule(
            "ChurnMonitorDown",
            f'up{{job="{MONITOR_JOB}"}} == 0',
            "10m",
            "warning",
            "The churnstream monitor is not answering Prometheus.",
            "Drift reports, the label join and automatic retraining are not running. "
            "Scoring is not affected.",
        ),
        AlertRule(
            "ChurnWorkerFallingBehind",
            f"{series(metrics.WORKER_LAG_SECONDS)} > {WORKER_LAG_SECONDS}",
            "10m",
            "warning",
            "The newest event the worker applied is over {{ $value | humanizeDuration }} old.",
            "Scores lag behind what customers do. Expected while a replay or a backfill "
            "reads old events; otherwise compare the consumer group's lag in Kafka with "
            "churn_worker_batch_duration_seconds, and add workers (up to the partition "
            "count).",
        ),
        AlertRule(
            "ChurnOutboxStuck",
            f"{series(metrics.WORKER_OUTBOX_WAITING)} > {OUTBOX_WAITING_ENTRIES}",
            "5m",
            "critical",
            "{{ $value }} outbox entries wait to be published to Kafka.",
            "Band changes and dead letters are committed in Redis but not reaching "
            "churn-scores and events-dlq. They are kept and published once Kafka accepts "
            "them; look for transaction errors in the worker's log.",
        ),
        AlertRule(
            "ChurnCommitsFailing",
            f"increase({series(metrics.WORKER_COMMIT_RETRIES, '_total')}[10m]) > {COMMIT_RETRIES}",
            "0m",
            "warning",
            "The worker retried {{ $value | humanize }} batch commits in 10 minutes.",
            "Redis or Kafka is failing or unreachable; batches are retried with backoff "
            "and nothing is lost or counted twice, but scores stall while it lasts.",
        ),
        AlertRule(
            "ChurnDeadLettersRising",
            f"sum(rate({dlq}[15m])) / sum(rate({consumed}[15m])) > {DEAD_LETTER_SHARE}",
            "15m",
            "warning",
            "{{ $value | humanizePercentage }} of the messages read go to the dead-letter topic.",
            "A producer sends malformed or wrongly keyed events. churn_worker_dlq_total "
            "says which reason; the records in events-dlq carry the reason and the field.",
        ),
        AlertRule(
            "ChurnApiErrors",
            f'sum(rate({requests}{{status=~"5.."}}[5m])) / sum(rate({requests}[5m])) '
            f"> {API_ERROR_SHARE}",
            "5m",
            "critical",
            "{{ $value | humanizePercentage }} of API requests fail with a 5xx.",
            "Usually Redis unreachable (503 with the reason in the body); see the API's log.",
        ),
        AlertRule(
            "ChurnApiSlow",
            f"histogram_quantile(0.99, sum by (le, route) (rate({durations}[5m]))) "
            f"> {API_P99_SECONDS}",
            "10m",
            "warning",
            "API p99 on {{ $labels.route }} is {{ $value | humanizeDuration }}.",
            "Check Redis latency and the API's CPU. A busy machine shared with the "
            "worker shows here first.",
        ),
        AlertRule(
            "ChurnModelDegraded",
            f"{series(metrics.MONITOR_AUC_DEGRADED)} == 1",
            "1h",
            "warning",
            "The champion's realized ROC AUC is below its validation AUC.",
            "Served scores predict outcomes worse than when the model was trained "
            "(more than CHURN_AUC_DROP_THRESHOLD). The monitor requests a retrain; "
            "`churnstream models` and the decisions log say what happened to it.",
        ),
        AlertRule(
            "ChurnMonitoringStale",
            f"time() - {series(metrics.MONITOR_LAST_RUN)} > {stale_after}",
            "0m",
            "warning",
            "The monitor's {{ $labels.exported_job }} job has not finished in "
            "{{ $value | humanizeDuration }}.",
            f"(The job's own label is renamed exported_job when scraped.) It should finish "
            "every CHURN_MONITOR_INTERVAL_SECONDS "
            f"({monitor_interval_seconds:g} s). Drift and label reports are out of date; "
            "see the monitor's log.",
        ),
    )


def rules_file(rules: tuple[AlertRule, ...], header: str = "") -> str:
    """The rules as a Prometheus rule file (YAML; strings JSON-quoted, so no YAML
    library is needed).

    >>> text = rules_file((AlertRule("A", "up == 0", "1m", "warning", "s", "d"),))
    >>> '- alert: "A"' in text and 'expr: "up == 0"' in text
    True
    """
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    lines += ["groups:", f"  - name: {json.dumps(GROUP)}", "    rules:"]
    for rule in rules:
        lines += [
            f"      - alert: {json.dumps(rule.name)}",
            f"        expr: {json.dumps(rule.expr)}",
            f"        for: {rule.for_}",
            "        labels:",
            f"          severity: {json.dumps(rule.severity)}",
            "        annotations:",
            f"          summary: {json.dumps(rule.summary)}",
            f"          description: {json.dumps(rule.description)}",
        ]
    return "\n".join(lines) + "\n"


COMPOSE_HEADER = """\
Alerting rules for the docker-compose stack's Prometheus (loaded by prometheus.yml).
Generated by `make docs` (churnstream/infra/prometheus_alerts.py) from the metric names
in core/metrics.py and the default settings; do not edit by hand.
"""


def compose_rules() -> str:
    """``monitoring/prometheus/alerts.yml``: the rules with the default settings."""
    from core.settings import Settings

    interval = float(Settings.model_fields["monitor_interval_seconds"].default)
    return rules_file(alert_rules(interval), COMPOSE_HEADER)
