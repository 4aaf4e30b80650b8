"""The alerting rules: valid for Prometheus, watching only metrics the code exports and
jobs Prometheus scrapes, and firing (and staying quiet) as their descriptions say,
checked by Prometheus's own rule evaluator (``promtool test rules``) on made-up series."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from churnstream.infra.prometheus import ALERTS_FILE, compose_config
from churnstream.infra.prometheus_alerts import alert_rules, rules_file
from tests.unit.test_grafana_dashboard import METRIC, exported_series

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_RULES = ROOT / "monitoring" / "prometheus" / ALERTS_FILE
JOB = re.compile(r'job="([^"]+)"')


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid_for_prometheus(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(COMPOSE_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    local = tmp_path / ALERTS_FILE
    local.write_text(rules_file(alert_rules(60.0)))
    result = promtool("check", "rules", str(local))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


def test_the_rules_watch_exported_metrics_and_scraped_jobs() -> None:
    exported = exported_series()
    jobs = {job["job_name"] for job in yaml.safe_load(compose_config())["scrape_configs"]}
    for rule in alert_rules():
        names = set(METRIC.findall(rule.expr))
        assert names <= exported, (rule.name, names - exported)
        assert names or "up{" in rule.expr, rule.name
        assert set(JOB.findall(rule.expr)) <= jobs, rule.name
        assert rule.severity in {"critical", "warning"}
        assert rule.summary and rule.description


def test_the_compose_config_loads_the_rules_beside_it() -> None:
    assert yaml.safe_load(compose_config())["rule_files"] == [ALERTS_FILE]


def test_the_monitoring_rule_follows_the_monitoring_interval() -> None:
    [stale] = [r for r in alert_rules(600.0) if r.name == "ChurnMonitoringStale"]
    assert stale.expr.endswith("> 1800")


# --- behaviour, evaluated by promtool -------------------------------------------------------

W = 'job="churnstream-worker", instance="worker:6066"'
A = 'job="churnstream-api", instance="api:8000"'
M = 'job="churnstream-monitor", instance="monitor:6067"'

# (alert, input series, [(minute, fires?)]); series are sampled every minute.
CASES = [
    ("ChurnWorkerDown", [(f"up{{{W}}}", "1 1 0x10")], [(1, False), (3, False), (5, True)]),
    ("ChurnWorkerDown", [(f"up{{{W}}}", "1x10")], [(10, False)]),
    ("ChurnApiDown", [(f"up{{{A}}}", "1 0x10")], [(2, False), (4, True)]),
    ("ChurnMonitorDown", [(f"up{{{M}}}", "0x20")], [(5, False), (12, True)]),
    (
        "ChurnWorkerFallingBehind",
        [(f"churn_worker_lag_seconds{{{W}}}", "5x5 2000x20")],
        [(5, False), (10, False), (17, True)],
    ),
    ("ChurnWorkerFallingBehind", [(f"churn_worker_lag_seconds{{{W}}}", "120x30")], [(30, False)]),
    (
        "ChurnOutboxStuck",
        [(f"churn_worker_outbox_waiting_entries{{{W}}}", "3 0 500+20x10")],
        [(3, False), (8, True)],
    ),
    ("ChurnOutboxStuck", [(f"churn_worker_outbox_waiting_entries{{{W}}}", "16x20")], [(20, False)]),
    (
        "ChurnCommitsFailing",
        [(f"churn_worker_commit_retries_total{{{W}}}", "0x5 0+1x15")],
        [(5, False), (18, True)],
    ),
    (
        "ChurnDeadLettersRising",  # 2 % of the messages read
        [
            (f'churn_worker_dlq_total{{{W}, reason="invalid_json"}}', "0+20x40"),
            (f'churn_worker_events_consumed_total{{{W}, topic="activity"}}', "0+1000x40"),
        ],
        [(10, False), (35, True)],
    ),
    (
        "ChurnDeadLettersRising",  # 0.1 %
        [
            (f'churn_worker_dlq_total{{{W}, reason="invalid_json"}}', "0+1x40"),
            (f'churn_worker_events_consumed_total{{{W}, topic="activity"}}', "0+1000x40"),
        ],
        [(35, False)],
    ),
    (
        "ChurnApiErrors",  # 9 % of requests fail
        [
            (
                f'churn_api_requests_total{{{A}, route="/ready", method="GET", status="503"}}',
                "0+10x20",
            ),
            (
                f'churn_api_requests_total{{{A}, route="/ready", method="GET", status="200"}}',
                "0+100x20",
            ),
        ],
        [(3, False), (15, True)],
    ),
    (
        "ChurnApiErrors",  # 404s are the callers' errors
        [
            (
                f'churn_api_requests_total{{{A}, route="unmatched", method="GET", status="404"}}',
                "0+50x20",
            ),
            (
                f'churn_api_requests_total{{{A}, route="/ready", method="GET", status="200"}}',
                "0+100x20",
            ),
        ],
        [(15, False)],
    ),
    (
        "ChurnModelDegraded",
        [(f"churn_monitor_auc_degraded{{{M}}}", "0x10 1x80")],
        [(30, False), (75, True)],
    ),
    (
        "ChurnMonitoringStale",  # the drift job finished at t=0 and never again (interval 1 h)
        [(f'churn_monitor_last_run_timestamp_seconds{{{M}, exported_job="drift"}}', "0x200")],
        [(60, False), (181, True)],
    ),
]


def test_the_alerts_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    # The rules as generated, without their annotations (templates: checked above).
    document = yaml.safe_load(rules_file(alert_rules(3600.0)))
    for rule in document["groups"][0]["rules"]:
        del rule["annotations"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(document))
    tests = []
    for alert, series, checks in CASES:
        [severity] = {r.severity for r in alert_rules() if r.name == alert}
        evaluations = []
        for minute, fires in checks:
            expected = []
            if fires:
                expected = [{"exp_labels": {"severity": severity, **_labels(alert, series)}}]
            evaluations.append(
                {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": expected}
            )
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": evaluations,
            }
        )
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "tests": tests}))
    result = promtool("test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr


def _labels(alert: str, series: list[tuple[str, str]]) -> dict[str, str]:
    """The labels an alert keeps from its input: those of its single series, none when
    its expression sums over series."""
    if alert in {"ChurnDeadLettersRising", "ChurnApiErrors"}:
        return {}
    [(text, _)] = series
    inner = text[text.index("{") + 1 : -1]
    return dict(
        (name.strip(), value.strip().strip('"'))
        for name, value in (part.split("=", 1) for part in inner.split(", "))
    )


@pytest.mark.parametrize("interval", [60.0, 3600.0, 86_400.0])
def test_the_rules_render_for_any_monitoring_interval(interval: float, tmp_path: Path) -> None:
    path = tmp_path / ALERTS_FILE
    path.write_text(rules_file(alert_rules(interval)))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
