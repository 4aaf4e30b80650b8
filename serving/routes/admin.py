"""Admin actions: promote a registered model, ask for a retrain. Every route needs a key.

The ``X-API-Key`` header must hold one of ``CHURN_API_KEYS``: missing → 401, wrong → 403,
no keys configured → 403 (admin disabled).

Retrain requests are JSON objects ``{"requested_at", "requested_by": "api", "reason"}``
LPUSHed onto the Redis list ``{prefix}:retrain:requests``. Nothing in the API acts on
them: the monitoring/trainer job consumes that list (oldest first, with RPOP).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from core.registry import (
    VERSION_PATTERN,
    ArtifactIntegrityError,
    ModelNotFoundError,
    RegistryError,
    utc_now_iso,
)
from serving.deps import StateDep, require_admin
from serving.routes import errors, json_response
from serving.schemas import PromoteResponse, RetrainBody, RetrainRecord

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=errors(
        e401="The X-API-Key header is missing.",
        e403="The key is wrong, or admin routes are disabled (no CHURN_API_KEYS).",
    ),
)


@router.post(
    "/models/{version}/promote",
    response_model=PromoteResponse,
    responses=errors(
        e404="No registered model has that version.",
        e409="The artifact does not match its recorded sha256, or the pointer kept changing.",
    ),
    summary="Make a registered version the champion",
)
def promote_model(
    version: Annotated[
        str, Path(pattern=VERSION_PATTERN.pattern, examples=["v20260105T101500-3fa9c1"])
    ],
    state: StateDep,
) -> Response:
    """Verify the version's artifact, then swap the champion pointer (one SET + PUBLISH).
    Workers and API processes pick the new champion up within CHURN_MODEL_CHECK_SECONDS;
    this process at once."""
    try:
        state.registry.promote(version)
    except ModelNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ArtifactIntegrityError as exc:
        raise HTTPException(409, str(exc)) from None
    except RegistryError as exc:
        raise HTTPException(409, str(exc)) from None
    state.watcher.refresh()
    pointer = state.registry.champion()
    if pointer is None:  # someone deleted the pointer in between
        raise HTTPException(409, "the champion pointer disappeared during the promotion")
    log.info("model promoted through the API version=%s previous=%s", version, pointer.previous)
    return json_response(
        {
            "champion": pointer.version,
            "previous": pointer.previous,
            "promoted_at": pointer.promoted_at,
        }
    )


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainRecord,
    responses=errors(e400="The body could not be read as text (e.g. it is not UTF-8)."),
    summary="Ask for a retrain (recorded, not run here)",
    description="Records a retrain request on the Redis list `{prefix}:retrain:requests` "
    "and returns it. The monitoring/trainer job consumes that list and runs the training; "
    "the API does not train.",
)
def request_retrain(state: StateDep, body: RetrainBody | None = None) -> Response:
    record = {
        "requested_at": utc_now_iso(),
        "requested_by": "api",
        "reason": (body or RetrainBody()).reason,
    }
    state.redis.lpush(state.keys.retrain_requests, json.dumps(record))
    log.info("retrain requested through the API reason=%s", record["reason"])
    return json_response(record, status_code=202)
