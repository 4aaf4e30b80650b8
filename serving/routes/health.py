"""Probes and metrics: liveness, readiness and Prometheus text. Always open (no key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.metrics import component_registry
from serving.deps import StateDep
from serving.routes import json_response
from serving.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])

NO_CHAMPION = "no champion model is loaded"

_METRICS_EXAMPLE = (
    "# HELP churn_api_requests_total HTTP requests answered by the API ...\n"
    "# TYPE churn_api_requests_total counter\n"
    'churn_api_requests_total{method="GET",route="/customers/{customer_id}/risk",'
    'status="200"} 42.0\n'
)


@router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health() -> Response:
    """The process answers. Says nothing about Redis or the model (see ``/ready``)."""
    return json_response({"status": "ok"})


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={
        503: {
            "model": ReadyResponse,
            "description": "Not ready: the reasons say why.",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not ready",
                        "model_version": None,
                        "reasons": ["no champion model is loaded"],
                    }
                }
            },
        }
    },
    summary="Readiness",
)
def ready(state: StateDep) -> Response:
    """200 when Redis answers PING and a champion model is loaded, else 503 with reasons.

    A failed re-check of the champion is listed but alone keeps the API ready: it still
    scores with the last model it checked."""
    reasons = []
    redis_ok = True
    try:
        state.redis.ping()
    except Exception as exc:  # any failure to talk to Redis means not ready
        redis_ok = False
        reasons.append(f"redis does not answer: {type(exc).__name__}")
    model, error = state.watcher.model, state.watcher.last_error
    if model is None:
        reasons.append(f"no champion model is loaded: {error}" if error else NO_CHAMPION)
    elif error:
        reasons.append(f"last champion check failed: {error}")
    ok = redis_ok and model is not None
    return json_response(
        {
            "status": "ready" if ok else "not ready",
            "model_version": model.version if model else None,
            "reasons": reasons,
        },
        status_code=200 if ok else 503,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"example": _METRICS_EXAMPLE}}}},
    summary="Prometheus metrics",
)
async def prometheus_metrics() -> Response:
    """Requests and latency by route template, scores served by band, the model in use."""
    return Response(generate_latest(component_registry("api")), media_type=CONTENT_TYPE_LATEST)
