"""Request accounting, done once for every HTTP request whichever way it is answered:
Prometheus counters and latency by route template, and the access log.

The access log (logger ``serving.access``) has one line per request, ``msg="GET
/customers/C1/risk 200"`` with ``client`` and ``duration_ms`` fields. What it covers is
``CHURN_API_ACCESS_LOG``: ``errors`` (the default: answers with status 400 and above),
``all``, or ``off``. Every request is counted in ``/metrics`` whatever the setting. API
keys travel in a header and are never logged.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from core import metrics
from serving.config import AccessLog

log = logging.getLogger("serving.access")

UNMATCHED = "unmatched"  # the route label of paths no route matches (bounded label values)


def route_label(scope: Scope) -> str:
    """The route template that answered (FastAPI's router puts it in the scope)."""
    label = scope.get("churnstream.route")
    if label is None:
        label = getattr(scope.get("route"), "path", None) or UNMATCHED
    return str(label)


def account(scope: Scope, status: int, seconds: float, access_log: AccessLog) -> None:
    """Count one answered request and write its access-log line when the setting asks."""
    route = route_label(scope)
    method = scope["method"]
    metrics.observe_api_request(route, method, status, seconds)
    if access_log == "off" or (access_log == "errors" and status < 400):
        return
    path = scope["path"]
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("latin-1")
    client = scope.get("client")
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "client": f"{client[0]}:{client[1]}" if client else "-",
            "duration_ms": round(seconds * 1000, 1),
        },
    )
