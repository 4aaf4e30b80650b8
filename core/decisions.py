"""Retraining decisions and retrain requests: the records monitoring, the retrainer and
the API share through Redis (keys in :mod:`core.keys`).

**Requests** are JSON objects LPUSHed onto ``Keys.retrain_requests`` and consumed oldest
first with RPOP::

    {"requested_at": "2026-03-01T00:00:00Z",   UTC ISO 8601
     "requested_by": "api" | "monitor" | "cli",
     "reason": "dataset drift: 62% of the features drifted",
     "trigger": "drift" | "auc_drop" | "manual",   (optional; "manual" when absent)
     "details": {...}}                             (optional)

**Decisions** are JSON objects LPUSHed onto ``Keys.decisions`` (newest first, at most
:data:`MAX_KEPT`), one per thing decided: a trigger that asked or declined to ask for a
retrain, and every retrain's outcome::

    {"decided_at": "2026-03-01T00:05:00Z",
     "decision": "retrain_requested" | "no_retrain" | "cooldown" |
                 "promoted" | "kept_champion" | "retrain_failed",
     "trigger": "drift" | "auc_drop" | "manual" | "schedule",
     "reason": "readable text",
     "champion": "v…" | null,       the champion when deciding (after, for "promoted")
     "candidate": "v…" | null,      the retrained model, when there is one
     "metrics": {...},              the numbers behind the decision
     "promoted": true | false | null}

The API lists them in ``GET /models`` (``decisions``) and the dashboard shows them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import redis

from core.keys import Keys

log = logging.getLogger(__name__)

MAX_KEPT = 1000

DecisionKind = Literal[
    "retrain_requested", "no_retrain", "cooldown", "promoted", "kept_champion", "retrain_failed"
]
Trigger = Literal["drift", "auc_drop", "manual", "schedule"]
TRIGGERS: tuple[Trigger, ...] = ("drift", "auc_drop", "manual", "schedule")


def utc_iso(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as UTC ISO 8601 with seconds and a ``Z``.

    >>> utc_iso(datetime(2026, 3, 1, 12, 30, 5, 123, tzinfo=UTC))
    '2026-03-01T12:30:05Z'
    """
    when = (moment or datetime.now(UTC)).astimezone(UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Decision:
    """One retraining decision (see the module docstring for the fields)."""

    decision: DecisionKind
    trigger: Trigger
    reason: str
    champion: str | None = None
    candidate: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    promoted: bool | None = None
    decided_at: str = field(default_factory=utc_iso)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=_jsonable)


@dataclass(frozen=True)
class RetrainRequest:
    """A pending retrain request (see the module docstring)."""

    reason: str
    requested_by: str
    trigger: Trigger = "manual"
    details: dict[str, Any] = field(default_factory=dict)
    requested_at: str = field(default_factory=utc_iso)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=_jsonable)

    @classmethod
    def from_json(cls, raw: str | bytes) -> RetrainRequest:
        """Parse a request; ``ValueError`` names what is wrong with it."""
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError(f"a retrain request must be a JSON object, got {type(document)}")
        trigger = document.get("trigger") or "manual"
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown retrain trigger {trigger!r}")
        details = document.get("details") or {}
        return cls(
            reason=str(document.get("reason") or ""),
            requested_by=str(document.get("requested_by") or "unknown"),
            trigger=cast(Trigger, trigger),
            details=details if isinstance(details, dict) else {"value": details},
            requested_at=str(document.get("requested_at") or utc_iso()),
        )


def _jsonable(value: object) -> object:
    """numpy scalars and the like as plain numbers; anything else as text."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def record_decision(client: redis.Redis, keys: Keys, decision: Decision) -> None:
    """LPUSH ``decision`` onto the decisions list and keep the newest :data:`MAX_KEPT`."""
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.decisions, decision.to_json())
        pipe.ltrim(keys.decisions, 0, MAX_KEPT - 1)
        pipe.execute()
    log.info(
        "retraining decision recorded decision=%s trigger=%s champion=%s candidate=%s reason=%s",
        decision.decision,
        decision.trigger,
        decision.champion,
        decision.candidate,
        decision.reason,
    )


def read_decisions(client: redis.Redis, keys: Keys, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` decisions (JSON objects; unreadable entries skipped)."""
    raw = cast(list[bytes], client.lrange(keys.decisions, 0, limit - 1))
    found = []
    for item in raw:
        try:
            document = json.loads(item)
        except ValueError:
            document = None
        if isinstance(document, dict):
            found.append(document)
        else:
            log.warning("skipping a retraining decision that is not a JSON object")
    return found


def push_retrain_request(client: redis.Redis, keys: Keys, request: RetrainRequest) -> None:
    """Queue ``request`` (LPUSH; consumers take the oldest first)."""
    client.lpush(keys.retrain_requests, request.to_json())


def pop_retrain_request(client: redis.Redis, keys: Keys) -> RetrainRequest | None:
    """The oldest pending request (RPOP), or ``None``. An unreadable one is logged with
    what is wrong, recorded as a ``retrain_failed`` decision, and skipped."""
    while True:
        raw = cast(bytes | None, client.rpop(keys.retrain_requests))
        if raw is None:
            return None
        try:
            return RetrainRequest.from_json(raw)
        except ValueError as exc:
            text = raw[:200].decode(errors="replace")
            log.error("unreadable retrain request skipped error=%s request=%s", exc, text)
            record_decision(
                client,
                keys,
                Decision(
                    decision="retrain_failed",
                    trigger="manual",
                    reason=f"unreadable retrain request skipped: {exc}",
                    metrics={"request": text},
                ),
            )


def pending_requests(client: redis.Redis, keys: Keys) -> int:
    """How many retrain requests wait."""
    return int(client.llen(keys.retrain_requests))
