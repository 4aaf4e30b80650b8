"""The HTTP API: ``create_app()`` builds it; ``churnstream api`` serves it with uvicorn.

The lifespan opens one Redis client (its pool is shared by the worker threads that run
the synchronous handlers), the feature store, the model registry and a watcher that
follows the champion every ``CHURN_MODEL_CHECK_SECONDS``, and sets the garbage collector
for serving (:mod:`serving.garbage_collector`). The API depends on ``core``
only. Routes live in :mod:`serving.routes`, one module per resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import anyio.to_thread
import redis
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisClusterException
from starlette.types import Message, Receive, Scope, Send

from core.features import FEATURE_NAMES
from core.keys import Keys
from core.logging import skip_unused_record_fields
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings, get_settings, scoring_clock
from core.store import FeatureStore
from serving import dashboard, fast_path
from serving.access import account
from serving.config import ApiSettings, get_api_settings
from serving.deps import ApiState, require_reader
from serving.garbage_collector import collecting_rarely
from serving.models_watch import ModelWatcher
from serving.openapi import with_champion_features
from serving.risk_batcher import RiskBatcher
from serving.routes import (
    admin,
    customers,
    health,
    json_response,
    models,
    redis_unavailable,
    reports,
    scoring,
    targets,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
Live churn risk of every customer, from the features the streaming worker keeps in Redis
and the champion model of the registry.

* Reads are open unless `CHURN_API_READ_KEYS_REQUIRED` is true; `/admin/*` always needs
  an `X-API-Key` header holding one of `CHURN_API_KEYS`.
* Times are ISO 8601 UTC; scores are churn probabilities in [0, 1]; explanations are
  signed contributions to the score's log-odds.
* Every 422 lists `{loc, msg, type}` objects whose `msg` starts with the place, e.g.
  `rows[3].features: missing 'sessions_7d'`.
"""


def _version() -> str:
    try:
        return package_version("churnstream")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None, api: ApiSettings | None = None) -> ChurnApi:
    """The API for ``settings`` and ``api`` (default: read from the environment)."""
    settings = settings or get_settings()
    api = api or get_api_settings()
    skip_unused_record_fields()  # uvicorn configures logging itself (churnstream api)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect_redis(settings)
        registry = ModelRegistry(settings, client)
        watcher = ModelWatcher(registry)
        await anyio.to_thread.run_sync(watcher.refresh)
        keys = Keys.of(settings)
        store = FeatureStore(client, keys)
        app.state.services = ApiState(
            settings=settings,
            api=api,
            redis=client,
            keys=keys,
            store=store,
            registry=registry,
            watcher=watcher,
            api_keys=api.keys(),
            risk=RiskBatcher(store, clock=scoring_clock(settings)),
        )
        polling = asyncio.create_task(watcher.run(settings.model_check_seconds))
        try:
            # what is loaded now is frozen out of collections; young passes made rare
            with collecting_rarely():
                yield
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            app.state.services.risk.close()
            client.close()

    app = ChurnApi(
        title="churnstream API",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, redis_error_handler)  # type: ignore[arg-type]
    # a cluster client that reaches no node raises this one (not a RedisError)
    app.add_exception_handler(RedisClusterException, redis_error_handler)  # type: ignore[arg-type]
    reads = [Depends(require_reader)] if api.read_keys_required else []
    for module in (customers, targets, scoring, models, reports):
        app.include_router(module.router, dependencies=reads)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)  # GET /: static HTML; its data comes from the routes above
    return app


class ChurnApi(FastAPI):
    """FastAPI, with every HTTP request accounted for once (:mod:`serving.access`), the
    risk lookup's plain case answered first (:mod:`serving.fast_path`) and an OpenAPI
    document that requires the champion's features (:mod:`serving.openapi`)."""

    _champion_openapi: tuple[str | None, dict[str, Any]] | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document (built once) with the current champion's features; rebuilt
        when the champion changes."""
        state = getattr(self.state, "services", None)
        model = state.watcher.model if state is not None else None
        version = model.version if model is not None else None
        cached = self._champion_openapi
        if cached is None or cached[0] != version:
            names = model.feature_names if model is not None else FEATURE_NAMES
            cached = (version, with_champion_features(super().openapi(), names, version))
            self._champion_openapi = cached
        return cached[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # when the app raises before answering

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state: ApiState | None = getattr(self.state, "services", None)
        try:
            customer_id = fast_path.risk_lookup(scope)
            if customer_id is None or not await fast_path.answer_risk(
                state, scope, receive, send_recording_status, customer_id
            ):
                await super().__call__(scope, receive, send_recording_status)
        finally:
            access_log = state.api.access_log if state is not None else "errors"
            account(scope, status, time.perf_counter() - started, access_log)


def where(loc: Sequence[Any]) -> str:
    """A validation error's location as the caller wrote it.

    >>> where(("body", "rows", 3, "features", "sessions_7d"))
    'rows[3].features.sessions_7d'
    >>> where(("query", "limit")), where(("body",))
    ('query.limit', 'body')
    """
    parts = list(loc)
    source = str(parts.pop(0)) if parts else "request"
    text = "" if source == "body" else source
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or source


async def redis_error_handler(
    _: Request, exc: redis.RedisError | RedisClusterException
) -> Response:
    """503 while Redis cannot be reached (a restart, a failover): retry later."""
    return redis_unavailable(exc)


async def validation_error_handler(_: Request, exc: RequestValidationError) -> Response:
    """422 in FastAPI's shape, each ``msg`` prefixed with its place, and no ``input`` (it
    could be 10,000 rows long)."""
    details = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        place = "body" if error.get("type") == "json_invalid" else where(loc)
        details.append({"loc": list(loc), "msg": f"{place}: {error['msg']}", "type": error["type"]})
    return json_response({"detail": details}, status_code=422)
