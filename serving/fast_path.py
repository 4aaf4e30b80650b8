"""``GET /customers/{id}/risk`` answered before FastAPI's per-request machinery.

The risk lookup is the route CRM integrations call at volume. Through FastAPI, each call
also passes its middleware stack, router, dependency solver and telemetry check, which
together cost more CPU than the lookup itself (~0.3 ms per request on one core). The app
(:class:`serving.main.ChurnApi`) recognises the plain case of this one route by its path
and answers it here, with the same function the FastAPI route uses
(:func:`serving.routes.customers.risk_answer`, which hands the lookup to
:class:`serving.risk_batcher.RiskBatcher`). Every other case goes through FastAPI
unchanged, so its answers and errors stay FastAPI's:

* another method, path or a customer id longer than the events allow
  (:data:`core.events.ID_MAX_LENGTH`; FastAPI's 422);
* read keys required and the request's ``X-API-Key`` missing or wrong (401/403);
* no champion loaded yet (503), or the app not started.

The route stays declared in FastAPI, which documents it in ``/docs``.

Cost: ~0.45 ms of one core per lookup on this project's 2-core machine (a quiet one),
almost all of it the lookup itself (the batcher's Redis read, decoding, features and
score: ~0.4 ms, see :mod:`serving.risk_batcher`). The answer's dict costs ~30 µs,
``orjson`` and the two ASGI messages ~12 µs, and the app's entry with this module's
matching and the request's accounting (:mod:`serving.access`) ~17 µs. The answer is the
FastAPI route's, byte for byte: the same function builds it and it is encoded the way
:func:`serving.routes.json_response` encodes it.
"""

from __future__ import annotations

import re

import orjson
from starlette.types import Receive, Scope, Send

from core.events import ID_MAX_LENGTH
from core.redis_client import REDIS_ERRORS
from serving.deps import ApiState, key_matches
from serving.routes import JSON, redis_unavailable
from serving.routes.customers import RISK_PATH, risk_answer

_JSON = JSON.encode()


def route_pattern(path: str, parameter: str, max_length: int) -> re.Pattern[str]:
    """``path`` (a route as FastAPI declares it) with ``{parameter}`` matching one path
    segment of 1 to ``max_length`` characters, captured.

    >>> pattern = route_pattern("/customers/{customer_id}/risk", "customer_id", 3)
    >>> pattern.fullmatch("/customers/C42/risk")[1], pattern.fullmatch("/customers/C421/risk")
    ('C42', None)
    """
    head, tail = path.split(f"{{{parameter}}}")
    return re.compile(f"{re.escape(head)}([^/]{{1,{max_length}}}){re.escape(tail)}")


# the customer ids CustomerIdPath allows
_RISK_ROUTE = route_pattern(RISK_PATH, "customer_id", ID_MAX_LENGTH)


def risk_lookup(scope: Scope) -> str | None:
    """The customer id of a ``GET /customers/{id}/risk`` request, else None."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    match = _RISK_ROUTE.fullmatch(path)
    return match[1] if match is not None else None


def _api_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return str(value.decode("latin-1"))
    return None


async def answer_risk(
    state: ApiState | None, scope: Scope, receive: Receive, send: Send, customer_id: str
) -> bool:
    """Answer the lookup and return True, or return False (nothing sent) to leave it to
    FastAPI."""
    if state is None:
        return False
    if state.api.read_keys_required:
        key = _api_key(scope)
        if not key or not key_matches(key, state.api_keys):
            return False
    model = state.watcher.model
    if model is None:
        return False
    scope["churnstream.route"] = RISK_PATH  # the route label of serving.access
    try:
        status, content = await risk_answer(state, customer_id, model)
    except REDIS_ERRORS as exc:
        await redis_unavailable(exc)(scope, receive, send)
        return True
    body = orjson.dumps(content)  # as serving.routes.json_response, without a Response
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True
