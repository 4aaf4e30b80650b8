"""A drift report written by the drift job renders in a real headless Chromium, served
by the API (``GET /reports/drift/{id}`` and ``/reports/drift/latest``), and the dashboard
links to it.

Needs ``chromium`` and ``chromedriver`` (see :mod:`tests.browser.test_dashboard`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.decisions import Decision, record_decision
from core.keys import Keys
from core.settings import Settings
from monitoring.jobs import drift_job
from serving.config import ApiSettings
from tests.browser.test_dashboard import driver, serving, wait_for
from tests.support_drift import make_scenario, process, streaming

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

__all__ = ["driver"]  # the fixture, imported for this module's tests


def test_drift_report_page_renders(
    settings: Settings, redis_client: redis.Redis, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    settings = settings.model_copy(update={"reports_dir": tmp_path / "reports"})
    scenario = make_scenario(settings, redis_client, customers=150, seed=9)
    with streaming(settings, redis_client, scenario.champion) as worker:
        process(worker, scenario, scenario.before + scenario.after)
    outcome, decision = drift_job(settings, redis_client)  # the report, and the trigger's verdict
    assert outcome.report is not None and outcome.summary is not None and decision is not None
    retrained = Decision(
        decision="kept_champion",
        trigger="manual",
        reason="manual retrain; candidate ROC AUC 0.8100 does not beat the champion's 0.8300",
        champion=scenario.champion.version,
        candidate="v-candidate-1",
        metrics={"candidate_roc_auc": 0.81, "champion_roc_auc": 0.83},
        promoted=False,
    )
    record_decision(redis_client, Keys.of(settings), retrained)
    report_id = outcome.report.entry["id"]
    drifted = outcome.summary.drifted_features
    assert drifted, "the scenario's product change should move some features"

    from serving.main import create_app

    app = create_app(settings, ApiSettings())
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as api:
        assert api.get(f"/reports/drift/{report_id}").status_code == 200
        for path in (f"/reports/drift/{report_id}", "/reports/drift/latest"):
            driver.get(base + path)
            # Evidently's page is a script-rendered app: wait for its widgets to be drawn
            text = wait_for(
                driver,
                lambda d: (
                    "Dataset Drift" in d.find_element(By.TAG_NAME, "body").text
                    and d.find_element(By.TAG_NAME, "body").text
                ),
                "the rendered drift report",
                timeout=30,
            )
            assert "Data Drift Summary" in text
            assert f"({len(drifted)} out of {len(outcome.summary.features)})" in text, text[:2000]
            # the per-column table is drawn, one row per column with its name
            names = [c.column for c in outcome.summary.features]
            assert sum(name in text for name in names) >= 5, text[:2000]
            errors = [
                e
                for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]
            ]
            assert not errors, errors
            # self-contained: every resource the page loaded came from the API itself
            resources = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert all(url.startswith(base + "/") for url in resources), resources
        driver.save_screenshot(str(tmp_path / "drift-report.png"))
        log.warning("drift report screenshot: %s", tmp_path / "drift-report.png")

        # the dashboard shows the latest report's share and links to its page
        driver.get(base + "/")
        link = wait_for(driver, lambda d: d.find_elements(By.ID, "drift-link"), "the drift link")[0]
        assert link.get_attribute("href") == f"{base}/reports/drift/{report_id}"
        shown = driver.find_element(By.ID, "drift-share").text
        assert shown == f"{round(outcome.summary.drift_share * 100)}%"

        # ... and the retraining decisions, newest first, as GET /models lists them
        rows = wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#decisions-table tbody tr"),
            "the retraining decisions",
        )
        assert [r.get_attribute("data-decision") for r in rows] == [
            "kept_champion",
            decision.decision,
        ]
        first = rows[0].text
        assert "kept champion" in first and "candidate 0.810 vs champion 0.830" in first
        assert "v-candidate-1" in first and "does not beat" in first
        assert decision.reason in rows[1].text
        driver.save_screenshot(str(tmp_path / "dashboard-decisions.png"))
