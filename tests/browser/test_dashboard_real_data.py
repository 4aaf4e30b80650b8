"""The dashboard's text on real data, in a real headless Chromium: the UCI Online Retail
file backfilled through the streaming BatchProcessor into Redis, scored as of the day
after the data ends (``CHURN_AS_OF``) by a model that ``churnstream train --data
online-retail`` really trained, registered and promoted (its metrics nest the RFM baseline,
boosting, the AUC per validation cutoff, the confusion matrix and the gate), with a real
drift report and the trigger's decision written by the drift job.

The page must read as text a person can use: no "[object Object]", "undefined", "NaN",
"Invalid Date", no years-long "days ago", and a value in every metric tile.

Needs the Online Retail file (``../shared/data/online_retail.parquet`` or
``CHURN_ONLINE_RETAIL_FILE``) and Chromium (see :mod:`tests.browser.test_dashboard`).
Set ``CHURN_DASHBOARD_SCREENSHOTS=DIR`` to keep the screenshots it takes in ``DIR``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rich.console import Console

from core.keys import Keys
from core.producer import EventProducer
from core.registry import ModelRegistry
from core.settings import Settings
from serving.config import ApiSettings
from tests.browser.test_dashboard import click_row, driver, serving, table_rows, wait_for
from tests.support import every_shard
from tests.support_batch import feed, processor
from tests.support_data import online_retail_file

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

__all__ = ["driver"]  # the fixture, imported for this module's tests

AS_OF = datetime(2011, 12, 10, tzinfo=UTC)  # the day after the data ends
FORBIDDEN = ("[object Object]", "undefined", "NaN", "Invalid Date")
EMPTY_VALUES = {"", "\u2013", "-", "n/a", "\u2026", "Loading\u2026"}  # the page's "no value" marks


def test_dashboard_text_on_backfilled_online_retail(
    settings: Settings, redis_client: redis.Redis, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from churnstream.demo.backfill import run_command
    from monitoring.jobs import drift_job
    from offline.importers.online_retail import import_online_retail

    data_file = online_retail_file()
    started = time.monotonic()
    settings = settings.model_copy(
        update={
            "as_of": AS_OF,
            "retention_days": 400,  # the trainer's features look back a year
            "model_dir": tmp_path / "models",
            "reports_dir": tmp_path / "reports",
            "archive_dir": tmp_path / "archive",
        }
    )

    # --- a really trained model: the real command, registered and promoted -------------
    console = Console(record=True, width=120)
    trained = json.loads(
        run_command(
            console,
            settings,
            ["train", "--data", "online-retail", str(data_file), "--json"],
            capture=True,
        )
    )
    assert trained["promoted"], trained["gate"]
    metrics = trained["metrics"]
    nested = {k for k, v in metrics.items() if isinstance(v, dict)}
    assert {"baseline", "boosting", "confusion", "gate", "roc_auc_by_cutoff"} <= nested
    registry = ModelRegistry(settings, redis_client)
    model = registry.load(trained["version"])

    # --- the real events through the streaming worker, scored as of AS_OF ---------------
    events, report = import_online_retail(data_file)
    with EventProducer(settings) as producer:
        worker = processor(settings, redis_client, producer, model, clock=time.time)
        feed(worker, events, 2000)
        customers = len(every_shard(redis_client, Keys.of(settings), "risk"))
        assert customers == report.customers
        outcome, decision = drift_job(settings, redis_client)
        assert outcome.report is not None and decision is not None
        log.warning("backfilled and reported in %.1f s", time.monotonic() - started)

        from serving.main import create_app

        app = create_app(settings, ApiSettings())
        with serving(app) as base:
            driver.get(base + "/")
            wait_for(
                driver,
                lambda d: (
                    d.find_elements(By.ID, "model-version")
                    and d.find_element(By.ID, "model-version").text == model.version
                    and d.find_elements(By.ID, "drift-link")
                    and d.find_elements(By.CSS_SELECTOR, "#at-risk-table tr[data-customer-id]")
                    and d.find_element(By.ID, "count-customers").text == f"{customers:,}"
                    and d.find_elements(By.ID, "decisions-table")
                ),
                "the model, the drift report, the at-risk table, the counts and the decisions",
            )
            # the risk card of the customer most at risk, opened as an analyst would
            click_row(driver, table_rows(driver)[0][0])
            wait_for(
                driver,
                lambda d: d.find_element(By.ID, "risk-card").is_displayed(),
                "the risk card",
            )
            save_screenshots(
                driver, Path(os.environ.get("CHURN_DASHBOARD_SCREENSHOTS") or tmp_path)
            )

            text = driver.find_element(By.TAG_NAME, "body").text
            for word in FORBIDDEN:
                assert word not in text, f"the page shows {word!r}: {context(text, word)}"
            # the data spans a year before AS_OF; the operations (training, the report, the
            # decision) happened moments ago: no age on the page may be longer than a year
            for match in re.finditer(r"([\d.,]+)\s+(days?|months?|years?)\s+ago", text):
                n, unit = float(match.group(1).replace(",", "")), match.group(2)
                longest = {"d": 366, "m": 13, "y": 1}[unit[0]]
                assert n <= longest, f"years-long age on the page: {context(text, match[0])}"

            # every metric tile shows a value
            tiles = driver.execute_script(
                "return [...document.querySelectorAll('.kpi, .metric')].map(t => ["
                "(t.querySelector('.label, .m-label') || t).innerText.trim(),"
                "(t.querySelector('.value, .m-value') || t).innerText.trim()])"
            )
            assert len(tiles) >= 8, tiles
            empty = [label for label, value in tiles if value in EMPTY_VALUES]
            assert not empty, f"metric tiles without a value: {empty}"

            # the nested metrics are shown as numbers, each where it belongs
            def shown(selector: str) -> str:
                found = driver.find_elements(By.CSS_SELECTOR, selector)
                assert found, f"no {selector} on the page"
                return str(found[0].text)

            comparison = shown("#model-comparison")
            for key in ("roc_auc", "pr_auc"):
                for row in (metrics, metrics["baseline"], metrics["boosting"]):
                    assert f"{row[key]:.3f}" in comparison, (key, comparison)
            by_cutoff = shown("#model-auc-by-cutoff")
            for day, auc in metrics["roc_auc_by_cutoff"].items():
                assert day in by_cutoff and f"{auc:.3f}" in by_cutoff, (day, by_cutoff)
                assert f"{metrics['baseline']['roc_auc_by_cutoff'][day]:.3f}" in by_cutoff
            confusion = shown("#model-confusion")
            for cell in ("tp", "fp", "tn", "fn"):
                assert f"{metrics['confusion'][cell]:,}" in confusion, (cell, confusion)
            gate = shown("#model-gate")
            assert ("passed" if metrics["gate"]["passed"] else "refused") in gate.lower()
            assert metrics["gate"]["reason"] in gate

            # whom to contact: the campaign's profit by expected gain, and the budgets
            targeting = metrics["targeting"]
            money = lambda x: f"{x:,.2f}"  # noqa: E731
            contact = shown("#model-targeting")
            assert money(targeting["profit_at_positive_gain"]) in contact, contact
            assert money(targeting["best_profit"]) in contact, contact
            assert money(targeting["best_profit_by_p_churn"]) in contact, contact
            assert f"{100 * targeting['positive_gain_share']:.1f}%" in contact, contact
            budgets = shown("#model-targeting-budgets")
            for share, reached in targeting["budgets"].items():
                assert f"{100 * float(share):.0f}%" in budgets, (share, budgets)
                for ranking in ("expected_loss", "p_churn", "value"):
                    value = reached["share_of_churned_value"][ranking]
                    assert f"{100 * value:.1f}%" in budgets, (share, ranking, budgets)
            accuracy = shown("#model-targeting-accuracy")
            for name, measured in targeting["value_accuracy"]["estimates"].items():
                assert name in accuracy and f"{measured['spearman']:.3f}" in accuracy, accuracy

            # times are relative to the scoring time, which the page names
            assert "2011-12-10" in shown("#scoring-time")
            scored = driver.execute_script(
                "return [...document.querySelectorAll('#at-risk-table tbody tr')]"
                ".map(tr => tr.cells[tr.cells.length - 1].innerText.trim())"
            )
            assert scored and all(s == "at scoring time" for s in scored), scored

            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors

    del worker, producer  # librdkafka's client goes now, not after the broker stops
    gc.collect()
    log.warning("dashboard real-data test took %.1f s", time.monotonic() - started)


def save_screenshots(driver: Any, directory: Path) -> None:
    """The whole page (``dashboard.png``) and the model panel (``dashboard-model.png``)."""
    from selenium.webdriver.common.by import By

    directory.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(1440, height + chrome)
    time.sleep(0.5)  # the page redraws its charts 0.2 s after a resize
    driver.save_screenshot(str(directory / "dashboard.png"))
    driver.find_element(By.ID, "model").screenshot(str(directory / "dashboard-model.png"))
    log.warning("dashboard screenshots in %s", directory)


def context(text: str, needle: str, width: int = 80) -> str:
    at = text.find(needle)
    return repr(text[max(0, at - width) : at + len(needle) + width])
