"""What route handlers receive: the app's shared services and the caller's permissions.

Handlers declare ``state: StateDep`` or ``model: ChampionDep`` and stay short. The
dependencies are ``async def`` although they never await: FastAPI runs a plain ``def``
dependency in its thread pool, a hop that cost ~0.3 ms per dependency per request here.

API keys arrive in the ``X-API-Key`` header and are compared in constant time against
every configured key; they are never logged nor echoed in error bodies.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, cast

import redis
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from core.keys import Keys
from core.model import Scorer
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from serving.config import ApiSettings
from serving.models_watch import ModelWatcher
from serving.risk_batcher import RiskBatcher

NO_CHAMPION = (
    "no champion model is loaded: register a model and promote it "
    "(`churnstream train`, or POST /admin/models/{version}/promote)"
)


@dataclass(frozen=True)
class ApiState:
    """Services opened once by the app's lifespan and shared by every request."""

    settings: Settings
    api: ApiSettings
    redis: redis.Redis
    keys: Keys
    store: FeatureStore
    registry: ModelRegistry
    watcher: ModelWatcher
    api_keys: tuple[bytes, ...]
    risk: RiskBatcher


async def get_state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.services)


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_champion(state: StateDep) -> Scorer:
    """The champion model, or 503 when none is loaded."""
    model = state.watcher.model
    if model is None:
        error = state.watcher.last_error
        detail = f"no champion model is loaded: {error}" if error else NO_CHAMPION
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail)
    return model


ChampionDep = Annotated[Scorer, Depends(get_champion)]

# auto_error=False: a missing key is answered by _check_key (401) with our own wording.
_api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="One of the keys in CHURN_API_KEYS.",
    auto_error=False,
)


def key_matches(candidate: str, accepted: tuple[bytes, ...]) -> bool:
    """Constant time in the candidate's content: every accepted key is compared.

    Header values arrive decoded as latin-1; encoding back gives the bytes sent, so a
    UTF-8 key configured in CHURN_API_KEYS matches the same key sent as UTF-8."""
    given = candidate.encode("latin-1")
    found = False
    for key in accepted:
        found |= hmac.compare_digest(given, key)
    return found


def _check_key(key: str | None, accepted: tuple[bytes, ...], what: str) -> None:
    if not accepted:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"{what} are disabled: no CHURN_API_KEYS are configured"
        )
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    if not key_matches(key, accepted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


async def require_admin(
    state: StateDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Admin routes: a valid key is always required (401 missing, 403 wrong or disabled)."""
    _check_key(key, state.api_keys, "admin routes")


async def require_reader(
    state: StateDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Read routes, mounted with this dependency only when CHURN_API_READ_KEYS_REQUIRED."""
    _check_key(key, state.api_keys, "read routes")
