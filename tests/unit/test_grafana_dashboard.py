"""The provisioned Grafana dashboard and the Prometheus config: valid, and every panel's
query names only metrics the code exports (core/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from core import metrics
from core.settings import Settings
from serving.config import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "churnstream.json"
DATASOURCES = ROOT / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = ROOT / "monitoring" / "grafana" / "provisioning" / "dashboards" / "churnstream.yml"
PROMETHEUS = ROOT / "monitoring" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "monitoring" / "prometheus" / "alerts.yml"
COMPOSE = ROOT / "docker-compose.yml"
METRIC = re.compile(r"\bchurn_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}


def exported_series() -> set[str]:
    """Every series name the collectors in core.metrics can expose."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def panels() -> list[dict]:
    document = json.loads(DASHBOARD.read_text())
    return [p for p in document["panels"] if p["type"] != "row"]


def test_the_dashboard_is_valid_grafana_json() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] == "churnstream" and document["title"]
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    for panel in panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_query_names_an_exported_metric() -> None:
    exported = exported_series()
    assert "churn_worker_events_consumed_total" in exported  # the helper finds counters
    assert "churn_worker_batch_duration_seconds_bucket" in exported  # and histograms
    for panel in panels():
        for target in panel["targets"]:
            named = set(METRIC.findall(target["expr"]))
            assert named, f"{panel['title']}: {target['expr']} names no churn metric"
            unknown = named - exported
            assert not unknown, f"{panel['title']}: not exported by core/metrics.py: {unknown}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = {m for p in panels() for t in p["targets"] for m in METRIC.findall(t["expr"])}
    for needed in (
        "churn_worker_events_consumed_total",  # throughput
        "churn_worker_lag_seconds",  # lag
        "churn_worker_batch_duration_seconds_bucket",  # batch latency
        "churn_worker_dlq_total",  # DLQ by reason
        "churn_monitor_customers_by_band",  # band distribution
        "churn_monitor_drift_share",  # drift share
        "churn_monitor_realized_roc_auc",  # realized AUC
        "churn_api_request_duration_seconds_bucket",  # API latency
        "churn_worker_model_info",  # model version
        "churn_monitor_retrains_total",  # retrains
    ):
        assert needed in used, needed


def test_prometheus_scrapes_every_process_on_its_default_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    settings = Settings()
    assert targets == {
        f"worker:{settings.worker_web_port}",
        f"api:{ApiSettings().port}",
        f"monitor:{settings.monitor_metrics_port}",
    }
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"prometheus", "grafana", "monitor"} <= set(compose)
    mounted = " ".join(compose["prometheus"]["volumes"] + compose["grafana"]["volumes"])
    for path in (PROMETHEUS, ALERTS, DASHBOARD.parent, DATASOURCES.parent.parent):
        assert "./" + str(path.relative_to(ROOT)) in mounted, path
