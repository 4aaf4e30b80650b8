"""Drift reports written by monitoring, served as they are.

The contract with monitoring: in ``CHURN_REPORTS_DIR`` (default ``reports/drift``) it
writes the report files and ``index.json``, a JSON array with one object per report::

    {"id": "20260301T000000Z",            unique, URL-safe; "latest" is reserved
     "created_at": "2026-03-01T00:00:00Z", ISO 8601 UTC
     "drift_share": 0.18,                  share of drifted columns, 0..1
     "dataset_drift": false,               Evidently's dataset-level verdict
     "html": "20260301T000000Z.html",      path relative to CHURN_REPORTS_DIR
     "json": "20260301T000000Z.json"}      path relative to CHURN_REPORTS_DIR

It replaces ``index.json`` atomically (write a temporary file, then rename) after the
files it names exist. Extra keys are passed through. The API lists entries newest first
(by ``created_at``) and serves an entry's HTML; it never serves a path outside the
directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from serving.deps import StateDep
from serving.routes import errors, json_response
from serving.schemas import DriftReportsResponse

log = logging.getLogger(__name__)

router = APIRouter(prefix="/reports/drift", tags=["reports"])

INDEX_FILE = "index.json"
_HTML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report's HTML page.",
        "content": {"text/html": {"example": "<!DOCTYPE html><html>…Data Drift…</html>"}},
    }
}


def read_index(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``index.json``, newest first ([] when it does not exist yet)."""
    path = directory / INDEX_FILE
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.error("unreadable drift report index path=%s error=%s", path, exc)
        raise HTTPException(503, f"the drift report index {INDEX_FILE} is unreadable") from None
    entries = [
        entry
        for entry in (document if isinstance(document, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and isinstance(entry.get("html"), str)
    ]
    return sorted(entries, key=lambda entry: str(entry.get("created_at") or ""), reverse=True)


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
    return json_response({"reports": read_index(state.api.reports_dir)})


@router.get(
    "/latest",
    response_class=FileResponse,
    responses={**_HTML_RESPONSE, **errors(e404="No drift report yet.", e503=_UNREADABLE)},
    summary="The newest drift report (HTML)",
)
def latest_report(state: StateDep) -> FileResponse:
    entries = read_index(state.api.reports_dir)
    if not entries:
        raise HTTPException(404, "no drift report has been written yet")
    return _html_of(state.api.reports_dir, entries[0])


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
    for entry in read_index(state.api.reports_dir):
        if entry["id"] == report_id:
            return _html_of(state.api.reports_dir, entry)
    raise HTTPException(404, f"no drift report '{report_id}'")
