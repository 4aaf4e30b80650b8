"""The analysts' dashboard: one self-contained HTML page at ``GET /``.

``page.html`` (inline CSS and vanilla JS, no external assets, works offline) is read once at
import and served as is. In the browser it polls the JSON API:

* ``GET /customers/at-risk``: the at-risk table, refreshed every 5 s;
* ``GET /customers/{id}/risk``: the risk card (search box, or a click on a table row);
* ``GET /stats/risk-distribution``: band counts and the score histogram (every 5 s);
* ``GET /models/current`` and ``GET /reports/drift``: the model and drift panels (every 30 s).

Stable hooks for tests: ``#search-input``, ``#search-button``, ``#risk-card``,
``#risk-score``, ``#risk-band``, ``#risk-message`` (``data-status`` = ``not-found`` /
``no-model`` / ``error``), ``#explanations .bar[data-feature]``,
``#at-risk-table tbody tr[data-customer-id]``, ``#count-high`` / ``-medium`` / ``-low``,
``#model-version``, ``#drift-link`` / ``#drift-empty``.
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
