"""The analysts' dashboard (``GET /``) in a real headless Chromium, against the real API
serving real state: a simulation processed by the streaming BatchProcessor into Redis,
scored by a registered and promoted model.

Needs ``chromium`` and ``chromedriver`` on the PATH (Debian: ``apt-get install chromium
chromium-driver``, which ``make setup`` installs) and the ``selenium`` package; without
them the test fails, saying what to install. Selenium never downloads a driver here: the
service is pointed at the installed one.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.keys import Keys
from core.producer import EventProducer
from core.registry import ModelRegistry
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate
from serving.config import ApiSettings
from tests.support import every_shard, free_ports
from tests.support_batch import feed, processor
from tests.support_models import recency_model

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

CUSTOMERS = 30
DAYS = 21
PAGE_SIZE = 25  # rows per page of the dashboard's at-risk table
WAIT = 10.0  # seconds to wait for the page to show something (it refreshes every 5 s)


def _executable(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    return None


@pytest.fixture
def driver() -> Iterator[Any]:
    """A headless Chromium driven through the installed chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = _executable("chromium", "chromium-browser", "google-chrome")
    chromedriver = _executable("chromedriver")
    if browser is None or chromedriver is None:
        pytest.fail(
            "needs chromium and chromedriver: run make setup (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="churn-dashboard-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
        "--window-size=1440,1700", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a background thread; yields its base URL."""
    import uvicorn

    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def write_drift_report(directory: Path) -> str:
    """A minimal report index as monitoring writes it; returns the report id."""
    directory.mkdir(parents=True, exist_ok=True)
    report_id = "20260301T000000Z"
    (directory / f"{report_id}.html").write_text("<!DOCTYPE html><html><body>drift</body></html>")
    (directory / f"{report_id}.json").write_text("{}")
    index = [
        {
            "id": report_id,
            "created_at": "2026-03-01T00:00:00Z",
            "drift_share": 0.25,
            "dataset_drift": True,
            "html": f"{report_id}.html",
            "json": f"{report_id}.json",
        }
    ]
    (directory / "index.json").write_text(json.dumps(index))
    return report_id


def wait_for(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"the dashboard did not show {what} within {timeout:g} s") from None


def test_dashboard_shows_live_risk(
    settings: Settings, redis_client: redis.Redis, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys as Key

    started = time.monotonic()

    # --- real state: a promoted model, a simulation through the streaming worker --------
    model = recency_model()
    registry = ModelRegistry(settings, redis_client)
    registry.register(
        model,
        metrics={"roc_auc": 0.812, "pr_auc": 0.443, "brier": 0.118, "base_rate": 0.16},
        training={"train_cutoffs": ["2026-01-29T00:00:00Z", "2026-02-26T00:00:00Z"],
                  "valid_cutoffs": ["2026-03-05T00:00:00Z", "2026-03-19T00:00:00Z"],
                  "label": "cancellation_or_inactivity", "horizon_days": 14},
    )  # fmt: skip
    registry.promote(model.version)
    # The simulation ends at midnight today, so "now" (real time, which the API scores at)
    # sees recent activity and a spread of scores.
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=DAYS
    )
    config = SimulationConfig(customers=CUSTOMERS + 3, days=DAYS, seed=11, start=start)
    events = list(simulate(config))
    later_ids = sorted({e.customer_id for e in events})[-3:]  # they arrive after page load
    first = [e for e in events if e.customer_id not in later_ids]
    later = [e for e in events if e.customer_id in later_ids]
    with EventProducer(settings) as producer:
        worker = processor(settings, redis_client, producer, model, clock=time.time)
        offsets: dict[tuple[str, int], int] = {}
        feed(worker, first, 1000, offsets)
        customers = len({e.customer_id for e in first})
        assert len(every_shard(redis_client, Keys.of(settings), "risk")) == customers

        report_id = write_drift_report(tmp_path / "reports")
        from serving.main import create_app

        app = create_app(settings, ApiSettings())
        with serving(app) as base, httpx.Client(base_url=base, timeout=10) as api:
            page = api.get("/")
            assert page.status_code == 200, "the dashboard router is not included in create_app"
            assert page.headers["content-type"].startswith("text/html")
            # self-contained: no external scripts, styles, images or fonts
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
            assert "<script src" not in page.text and "@import" not in page.text

            driver.get(base + "/")
            assert "churnstream" in driver.title

            # (a) the at-risk table, as the API lists it
            at_risk = api.get("/customers/at-risk", params={"limit": PAGE_SIZE}).json()
            assert at_risk["total"] == customers
            expected_ids = [item["customer_id"] for item in at_risk["items"]]
            table = wait_for(driver, table_rows, "the at-risk table")
            assert [row[0] for row in table] == expected_ids
            top = at_risk["items"][0]
            assert table[0][1] == f"{top['score']:.3f}"
            assert table[0][2].lower() == top["band"]
            assert table[0][3] == model.version
            assert f"of {customers}" in driver.find_element(By.ID, "page-info").text

            # (c) distribution: band counts and ten histogram bars
            distribution = api.get("/stats/risk-distribution").json()
            for band in ("high", "medium", "low"):
                wait_for(
                    driver,
                    lambda d, band=band: (
                        d.find_element(By.ID, f"count-{band}").text
                        == str(distribution["bands"][band])
                    ),
                    f"the {band} band count",
                )
            assert len(driver.find_elements(By.CSS_SELECTOR, "#histogram .hist-bar")) == 10
            drawn = [
                int(b.get_attribute("data-count"))
                for b in driver.find_elements(By.CSS_SELECTOR, "#histogram .hist-bar")
            ]
            assert drawn == distribution["counts"]

            # (d) the model and the latest drift report
            wait_for(
                driver,
                lambda d: (
                    d.find_elements(By.ID, "model-version")
                    and d.find_element(By.ID, "model-version").text == model.version
                ),
                "the current model",
            )
            link = wait_for(
                driver, lambda d: d.find_elements(By.ID, "drift-link"), "the drift report link"
            )[0]
            href = link.get_attribute("href")
            assert href == f"{base}/reports/drift/{report_id}"
            assert api.get(href).status_code == 200
            assert driver.find_element(By.ID, "drift-share").text == "25%"
            assert "Dataset drift detected" in driver.find_element(By.ID, "drift").text

            check_contact_list(driver, api)

            # (b) clicking a row opens that customer's risk card
            click_row(driver, top["customer_id"])
            check_risk_card(driver, api, top["customer_id"])

            # (b) searching: the lowest-risk customer (not necessarily on the first page)
            last = api.get(
                "/customers/at-risk", params={"limit": 1, "offset": customers - 1}
            ).json()["items"][0]["customer_id"]
            box = driver.find_element(By.ID, "search-input")
            box.clear()
            box.send_keys(last)
            driver.find_element(By.ID, "search-button").click()
            check_risk_card(driver, api, last)
            driver.find_element(By.CSS_SELECTOR, "#features summary").click()
            feature_rows = driver.find_elements(By.CSS_SELECTOR, "#features-table tbody tr")
            assert len(feature_rows) == len(model.feature_names)
            screenshot = tmp_path / "dashboard.png"
            assert driver.save_screenshot(str(screenshot))
            log.warning("dashboard screenshot: %s", screenshot)

            # an unknown customer: a clear message, no card
            box.clear()
            box.send_keys("NO-SUCH-CUSTOMER", Key.ENTER)
            message = wait_for(
                driver,
                lambda d: (
                    d.find_element(By.ID, "risk-message").get_attribute("data-status")
                    == "not-found"
                    and d.find_element(By.ID, "risk-message")
                ),
                "the not-found message",
            )
            assert message.is_displayed()
            assert "NO-SUCH-CUSTOMER" in message.text and "not found" in message.text
            assert not driver.find_element(By.ID, "risk-card").is_displayed()
            driver.save_screenshot(str(tmp_path / "dashboard-not-found.png"))

            # the table refreshes by itself (every 5 s) as the worker scores new customers
            feed(worker, later, 1000, offsets)
            total = customers + len(later_ids)
            wait_for(
                driver,
                lambda d: (
                    f"of {total}" in d.find_element(By.ID, "page-info").text
                    and d.find_element(By.ID, "count-customers").text == str(total)
                ),
                "the new customers (table refresh)",
                timeout=12,
            )

            # before monitoring has written a report, the page says so
            (tmp_path / "reports" / "index.json").unlink()
            driver.get(base + "/")
            empty = wait_for(
                driver, lambda d: d.find_elements(By.ID, "drift-empty"), "no drift report"
            )
            assert empty[0].text == "No drift report yet."

            # every request the page made went to the API itself
            resources = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert resources and all(url.startswith(base + "/") for url in resources)
            errors = [
                entry
                for entry in driver.get_log("browser")
                if entry["level"] == "SEVERE" and "NO-SUCH-CUSTOMER" not in entry["message"]
            ]
            assert not errors, errors

    del worker, producer  # librdkafka's client goes now, not after the broker stops
    gc.collect()  # (it sits in a reference cycle through its delivery callbacks)
    log.warning("dashboard test took %.1f s", time.monotonic() - started)


def table_rows(driver: Any) -> list[list[str]]:
    """The at-risk table's rows (cell texts), read in one go: the page rebuilds the rows
    every 5 s, so element references can go stale between two reads."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('#at-risk-table tbody tr[data-customer-id]')]"
        ".map(tr => [...tr.cells].map(td => td.innerText.trim()))"
    )


def click_row(driver: Any, customer_id: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    selector = f'#at-risk-table tbody tr[data-customer-id="{customer_id}"]'
    for _ in range(5):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:  # the table refreshed under the click
            continue
    raise AssertionError(f"could not click the row of {customer_id}")


def check_risk_card(driver: Any, api: httpx.Client, customer_id: str) -> None:
    """The card shows ``customer_id`` with the API's score, band and explanations."""
    from selenium.webdriver.common.by import By

    card = wait_for(
        driver,
        lambda d: (
            d.find_element(By.ID, "risk-card").get_attribute("data-customer-id") == customer_id
            and d.find_element(By.ID, "risk-card")
        ),
        f"the risk card of {customer_id}",
    )
    assert card.is_displayed()
    risk = api.get(f"/customers/{customer_id}/risk").json()
    shown = driver.find_element(By.ID, "risk-score")
    # The API scores live features at request time, so two requests a moment apart can
    # differ in the 6th decimal: compare the value the page received, then its rounding.
    received = float(shown.get_attribute("data-score"))
    assert received == pytest.approx(risk["score"], abs=1e-4)
    assert shown.text == f"{received:.3f}"
    assert float(shown.text) == pytest.approx(risk["score"], abs=5e-4 + 1e-4)
    assert driver.find_element(By.ID, "risk-customer").text == customer_id
    assert driver.find_element(By.ID, "risk-band").text.lower() == risk["band"]
    assert driver.find_element(By.ID, "risk-action").text == risk["action"]
    assert driver.find_element(By.ID, "risk-model").text == risk["model_version"]
    shown_value = driver.find_element(By.ID, "risk-value").text.replace(",", "")
    assert float(shown_value) == pytest.approx(risk["value"], rel=1e-3, abs=0.01)
    bars = driver.find_elements(By.CSS_SELECTOR, "#explanations .bar[data-feature]")
    assert len(bars) >= 1
    assert [b.get_attribute("data-feature") for b in bars] == [
        e["feature"] for e in risk["explanations"]
    ]
    for bar, explanation in zip(bars, risk["explanations"], strict=True):
        up = explanation["contribution"] > 0
        assert bar.get_attribute("data-direction") == ("up" if up else "down")
        colour = bar.value_of_css_property("fill")
        assert colour == ("rgb(209, 64, 58)" if up else "rgb(35, 137, 92)"), colour


def contact_rows(driver: Any) -> list[list[str]]:
    """The contact list's rows (cell texts), read in one go (see :func:`table_rows`)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('#to-contact-table tbody tr[data-customer-id]')]"
        ".map(tr => [...tr.cells].map(td => td.innerText.trim()))"
    )


def check_contact_list(driver: Any, api: httpx.Client) -> None:
    """The "whom to contact" panel lists what ``GET /customers/to-contact`` answers, a
    budget typed into it cuts the list as the API does, and a row opens the risk card."""
    from selenium.webdriver.common.by import By

    expected = api.get("/customers/to-contact", params={"max_contacts": 20}).json()["items"]
    assert len(expected) >= 2, "the simulated customers should give a contact list"
    ids = [item["customer_id"] for item in expected]
    rows = wait_for(driver, lambda d: contact_rows(d) or None, "the contact list")
    assert [row[1] for row in rows] == ids
    assert [float(row[6].replace(",", "")) for row in rows] == [i["gain"] for i in expected]
    assert [row[7] for row in rows] == [i["action"] for i in expected]
    # room for the first contact only (spends are rounded to cents; each is at least 1)
    budget = expected[0]["expected_spend"] + 0.01
    field = driver.find_element(By.ID, "to-contact-budget")
    field.clear()
    field.send_keys(str(budget))
    driver.find_element(By.CSS_SELECTOR, "#to-contact-form button").click()
    wait_for(driver, lambda d: [r[1] for r in contact_rows(d)] == ids[:1], "the list within budget")
    driver.find_element(
        By.CSS_SELECTOR, f"#to-contact-table tr[data-customer-id='{ids[0]}']"
    ).click()
    check_risk_card(driver, api, ids[0])
    field.clear()
    driver.find_element(By.CSS_SELECTOR, "#to-contact-form button").click()
