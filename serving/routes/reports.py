"""Drift reports written by monitoring, served as they are.

The index format is :mod:`core.report_index`'s (``index.json`` in ``CHURN_REPORTS_DIR``).
Entries are listed newest first (by ``created_at``); an entry's HTML is served only from
inside the directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from core.report_index import INDEX_FILE, newest_first, read_index
from serving.deps import StateDep
from serving.routes import errors, json_response
from serving.schemas import DriftReportsResponse

log = logging.getLogger(__name__)

router = APIRouter(prefix="/reports/drift", tags=["reports"])

_HTML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report's HTML page.",
        "content": {"text/html": {"example": "<!DOCTYPE html><html>…Data Drift…</html>"}},
    }
}


def served_reports(directory: Path) -> list[dict[str, Any]]:
    """The index's servable entries, newest first ([] before the first report); 503 when
    the index cannot be read."""
    try:
        return newest_first(read_index(directory))
    except (OSError, ValueError) as exc:
        log.error("unreadable drift report index directory=%s error=%s", directory, exc)
        raise HTTPException(503, f"the drift report index {INDEX_FILE} is unreadable") from None


def _html_of(directory: Path, entry: dict[str, Any]) -> FileResponse:
    root = directory.resolve()
    path = (root / entry["html"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"drift report '{entry['id']}' has no HTML file")
    return FileResponse(path, media_type="text/html")


_UNREADABLE = "index.json exists but is not readable JSON."


@router.get(
    "",
    response_model=DriftReportsResponse,
    responses=errors(e503=_UNREADABLE),
    summary="Drift reports, newest first",
)
def list_reports(state: StateDep) -> Response:
    """The entries of ``CHURN_REPORTS_DIR/index.json`` (an empty list before the first)."""
    return json_response({"reports": served_reports(state.settings.reports_dir)})


@router.get(
    "/latest",
    response_class=FileResponse,
    responses={**_HTML_RESPONSE, **errors(e404="No drift report yet.", e503=_UNREADABLE)},
    summary="The newest drift report (HTML)",
)
def latest_report(state: StateDep) -> FileResponse:
    entries = served_reports(state.settings.reports_dir)
    if not entries:
        raise HTTPException(404, "no drift report has been written yet")
    return _html_of(state.settings.reports_dir, entries[0])


@router.get(
    "/{report_id}",
    response_class=FileResponse,
    responses={**_HTML_RESPONSE, **errors(e404="No such report.", e503=_UNREADABLE)},
    summary="One drift report (HTML)",
)
def report_page(
    report_id: Annotated[
        str, PathParam(min_length=1, max_length=200, examples=["20260301T000000Z"])
    ],
    state: StateDep,
) -> FileResponse:
    for entry in served_reports(state.settings.reports_dir):
        if entry["id"] == report_id:
            return _html_of(state.settings.reports_dir, entry)
    raise HTTPException(404, f"no drift report '{report_id}'")
