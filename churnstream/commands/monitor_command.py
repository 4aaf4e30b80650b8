"""``churnstream monitor``: drift, delayed labels and retraining in one loop (the loop is
:mod:`churnstream.monitor_loop`, imported when the command runs: it pulls in Evidently,
river and scikit-learn)."""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import asdict
from typing import Any

import typer
from rich.console import Console

from churnstream.commands.shared import flag

log = logging.getLogger(__name__)


def monitor_command(
    once: bool = flag(
        "--once",
        help="Run the drift report and the label join once, run pending retrain "
        "requests, and exit.",
    ),
    json_output: bool = flag("--json", help="With --once: print the results as one JSON object."),
) -> None:
    """Watch the live model: drift reports, realized performance on delayed labels, a fast
    score-shift alarm, and retraining when drift or a drop in realized ROC AUC calls for
    it (with a cooldown). Every decision is recorded and shown in GET /models.

    Runs until Ctrl-C; metrics on CHURN_MONITOR_METRICS_PORT (/metrics).
    """
    from churnstream.monitor_loop import MonitorLoop
    from core.redis_client import connect_redis
    from core.settings import get_settings

    settings = get_settings()
    client = connect_redis(settings)
    loop = MonitorLoop(settings, client)
    if once:
        result = loop.run_jobs()
        retrains = loop.drain_requests()
        result["retrains"] = [asdict(r.decision) for r in retrains]
        if json_output:
            typer.echo(json.dumps(result, sort_keys=True, default=str))
        else:
            _print_once(result)
        return
    if settings.monitor_metrics_port:
        from prometheus_client import start_http_server

        from core.metrics import component_registry

        start_http_server(
            settings.monitor_metrics_port,
            addr=settings.monitor_metrics_host,
            registry=component_registry("monitor"),
        )
        log.info("monitor metrics on port=%d", settings.monitor_metrics_port)
    log.info(
        "monitor started interval_seconds=%s bucket_seconds=%s",
        settings.monitor_interval_seconds,
        settings.score_shift_bucket_seconds,
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("monitor stopping signal=%s", signal.Signals(signum).name)
        loop.stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        loop.stopping = True
    log.info("monitor stopped")


def _print_once(result: dict[str, Any]) -> None:
    console = Console(highlight=False)
    drift = result.get("drift", {})
    if "error" in drift:
        console.print(f"drift: [red]failed[/] {drift['error']}")
    elif drift.get("skipped"):
        console.print(f"drift: skipped ({drift['skipped']})")
    else:
        console.print(
            f"drift: share {drift['drift_share']:.1%}, dataset drift "
            f"{'yes' if drift['dataset_drift'] else 'no'}, drifted: "
            f"{', '.join(drift['drifted_features']) or 'none'}"
        )
    decision = result.get("drift_decision")
    if decision:
        console.print(f"  decision: {decision['decision']} ({decision['reason']})")
    labels = result.get("labels", {})
    if "error" in labels:
        console.print(f"labels: [red]failed[/] {labels['error']}")
    else:
        console.print(
            f"labels: snapshot {labels.get('snapshot') or '-'}, "
            f"{len(labels.get('periods', []))} period(s) evaluated"
        )
        for period in labels.get("periods", []):
            console.print(
                f"  {period['cutoff']}: ROC AUC {period['roc_auc']}, PR AUC {period['pr_auc']}, "
                f"{period['rows']:,} rows, degraded {period['degraded']}"
            )
    for retrain_decision in result.get("retrains", []):
        console.print(f"retrain: {retrain_decision['decision']} — {retrain_decision['reason']}")
