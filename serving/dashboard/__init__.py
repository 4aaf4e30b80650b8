"""The analysts' dashboard: one self-contained HTML page at ``GET /``.

``page.html`` (inline CSS and vanilla JS, no external assets, works offline) is read once at
import and served as is. In the browser it polls the JSON API:

* ``GET /customers/at-risk``: the at-risk table, refreshed every 5 s;
* ``GET /customers/{id}/risk``: the risk card (search box, or a click on a table row);
* ``GET /stats/risk-distribution``: band counts and the score histogram (every 5 s);
* ``GET /models/current``, ``GET /reports/drift`` and ``GET /models``: the model, drift and
  retraining-decision panels (every 30 s).

Layout: a headline row (customers scored, the three bands, the champion's ROC AUC against
the RFM baseline, the last drift check), then one card per panel. Each panel is one
``refresh…`` function that fetches and renders into its own ``<section>``, listed in
``PANELS`` at the end of the script; a new panel is a section and one entry there. The
model's nested metrics (the RFM baseline and boosting, the ROC AUC per validation cutoff,
the confusion matrix, the promotion gate) are small tables, one function each.

Times: ages of the data ("last event 3 days ago", "scored") are measured from the scoring
time the API reports (the clock, or ``CHURN_AS_OF``, shown in the header); ages of
operations (a report written, a decision taken) from the browser's clock.

Stable hooks for tests: ``#search-input``, ``#search-button``, ``#risk-card``,
``#risk-score``, ``#risk-band``, ``#risk-message`` (``data-status`` = ``not-found`` /
``no-model`` / ``error``), ``#explanations .bar[data-feature]``,
``#at-risk-table tbody tr[data-customer-id]``, ``#count-high`` / ``-medium`` / ``-low``,
``#scoring-time``, ``#model-version``, ``#model-comparison``, ``#model-auc-by-cutoff``,
``#model-confusion``, ``#model-bands``, ``#model-gate``, ``#drift-link`` / ``#drift-empty``;
headline tiles are ``.kpi`` (``.label``, ``.value``), metric tiles ``.metric``
(``.m-label``, ``.m-value``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE_PATH = Path(__file__).with_name("page.html")
PAGE = PAGE_PATH.read_text(encoding="utf-8")

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    """The dashboard page (HTML; the data comes from the JSON API in the browser)."""
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})


__all__ = ["PAGE", "router"]
