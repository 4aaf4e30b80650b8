"""The model registry, read-only: registered versions, the champion, retraining decisions.

Decisions: monitoring records each retraining decision (drift seen, retrain or not, why)
as a JSON object LPUSHed onto the Redis list ``{prefix}:decisions``, newest first. The
API only reads it; until monitoring writes there, ``decisions`` is an empty list.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter, HTTPException, Response

from core.decisions import read_decisions
from core.registry import ModelNotFoundError
from serving.deps import StateDep
from serving.routes import errors, json_response
from serving.schemas import MAX_DECISIONS, ModelManifestOut, ModelsResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse, summary="Registered models and the champion")
def list_models(state: StateDep) -> Response:
    """Every registered version (oldest first, status reconciled with the champion
    pointer), the champion's version, and the latest retraining decisions recorded by
    monitoring in ``{prefix}:decisions`` (an empty list until it writes any)."""
    pointer = state.registry.champion()
    return json_response(
        {
            "champion": pointer.version if pointer else None,
            "models": [asdict(manifest) for manifest in state.registry.list()],
            "decisions": read_decisions(state.redis, state.keys, MAX_DECISIONS),
        }
    )


@router.get(
    "/models/current",
    response_model=ModelManifestOut,
    responses=errors(
        e404="No champion has been promoted.",
        e503="The champion's files are missing from CHURN_MODEL_DIR.",
    ),
    summary="The champion's manifest",
)
def current_model(state: StateDep) -> Response:
    """The manifest of the version the champion pointer names (``status`` is
    ``champion``). This is the registry's truth; the model the API scores with follows it
    within ``CHURN_MODEL_CHECK_SECONDS``."""
    pointer = state.registry.champion()
    if pointer is None:
        raise HTTPException(404, "no champion model has been promoted yet")
    try:
        manifest = asdict(state.registry.manifest(pointer.version))
    except ModelNotFoundError:
        raise HTTPException(
            503, f"champion {pointer.version} is not in this API's model directory"
        ) from None
    manifest["status"] = "champion"
    return json_response(manifest)
