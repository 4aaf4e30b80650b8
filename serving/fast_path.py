"""``GET /customers/{id}/risk`` answered before FastAPI's per-request machinery.

The risk lookup is the route CRM integrations call at volume. Through FastAPI, each call
also passes its middleware stack, router, dependency solver and telemetry check, which
together cost more CPU than the lookup itself (~0.3 ms per request on one core).
:class:`ChurnApi` recognises the plain case of this one route by its path and answers it
with the same function the FastAPI route uses (:func:`serving.routes.customers.risk_response`),
recording the same metrics. Every other case goes through FastAPI unchanged, so its
answers and errors stay FastAPI's:

* another method, path or a customer id longer than 128 characters (FastAPI's 422);
* read keys required and the request's ``X-API-Key`` missing or wrong (401/403);
* no champion loaded yet (503), or the app not started.

The route stays declared in FastAPI, which documents it in ``/docs``.
"""

from __future__ import annotations

import logging
import re
import time

import redis
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from core import metrics
from serving.deps import ApiState, key_matches
from serving.routes import redis_unavailable
from serving.routes.customers import RISK_PATH, risk_response

log = logging.getLogger(__name__)

# a path segment of 1..128 characters, as CustomerIdPath allows
_RISK_ROUTE = re.compile(r"/customers/([^/]{1,128})/risk")


class ChurnApi(FastAPI):
    """FastAPI, with the risk lookup's plain case answered first (see the module)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            match = _RISK_ROUTE.fullmatch(path)
            if match is not None and await _answer_risk(self, scope, receive, send, match[1]):
                return
        await super().__call__(scope, receive, send)


def _api_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return str(value.decode("latin-1"))
    return None


async def _answer_risk(
    app: FastAPI, scope: Scope, receive: Receive, send: Send, customer_id: str
) -> bool:
    """Answer the lookup and return True, or return False (nothing sent) to leave it to
    FastAPI."""
    state: ApiState | None = getattr(app.state, "services", None)
    if state is None:
        return False
    if state.api.read_keys_required:
        key = _api_key(scope)
        if not key or not key_matches(key, state.api_keys):
            return False
    model = state.watcher.model
    if model is None:
        return False
    started = time.perf_counter()
    status = 500  # when answering raises (uvicorn then sends its own 500)
    try:
        try:
            response = await risk_response(state, customer_id, model)
        except redis.RedisError as exc:
            response = redis_unavailable(exc)
        status = response.status_code
        await response(scope, receive, send)
    finally:
        metrics.observe_api_request(RISK_PATH, "GET", status, time.perf_counter() - started)
    return True
