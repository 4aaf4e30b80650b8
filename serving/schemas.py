"""Request and response bodies of the API, with the examples shown in the OpenAPI docs.

Request bodies are validated with these models. Responses on the hot paths are built as
plain dicts and encoded with orjson (no pydantic on the way out); the response models
here document them in the OpenAPI schema and the integration tests check that the
answers match it. Times are ISO 8601 UTC strings ending in ``Z``; scores are churn
probabilities in [0, 1]; contributions are signed log-odds terms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Band = Literal["low", "medium", "high"]
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
CustomerId = Annotated[str, Field(min_length=1, max_length=128)]

MAX_BATCH_ROWS = 10_000
MAX_DECISIONS = 100

_FEATURES_EXAMPLE: dict[str, Any] = {
    "sessions_7d": 1.0,
    "days_since_last_activity": 12.4,
    "error_rate_30d": 0.08,
}
_EXPLANATIONS_EXAMPLE = [
    {"feature": "days_since_last_activity", "value": 12.4, "contribution": 4.34},
    {"feature": "sessions_7d", "value": 1.0, "contribution": -0.4},
    {"feature": "error_rate_30d", "value": 0.08, "contribution": 0.16},
]


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer except 422 (see ``HTTPValidationError``)."""

    model_config = _example({"detail": "customer 'C00042' is unknown: no events seen"})

    detail: str


class Explanation(BaseModel):
    feature: str
    value: float
    contribution: float = Field(description="Signed term in the score's log-odds.")


class StoredScore(BaseModel):
    """The score the worker last wrote for the customer."""

    score: float
    band: Band
    model_version: str
    scored_at: str


class RiskResponse(BaseModel):
    """A customer's risk now: live features at request time, scored by the champion."""

    model_config = _example(
        {
            "customer_id": "C00042",
            "score": 0.97,
            "band": "high",
            "action": "retention offer",
            "value": 180.5,
            "expected_loss": 175.09,
            "model_version": "v20260105T101500-3fa9c1",
            "last_event_time": "2026-02-18T09:12:44Z",
            "evaluated_at": "2026-03-01T12:00:00.125Z",
            "stored_score": {
                "score": 0.95,
                "band": "high",
                "model_version": "v20260105T101500-3fa9c1",
                "scored_at": "2026-03-01T11:02:13.480Z",
            },
            "explanations": _EXPLANATIONS_EXAMPLE,
            "features": _FEATURES_EXAMPLE,
        }
    )

    customer_id: str
    score: float
    band: Band
    action: str = Field(description="The retention action for the band (CHURN_RETENTION_ACTIONS).")
    value: float = Field(
        description="The customer's value over the model's label horizon, in the events' "
        "currency: recent spend rate net of refunds x horizon, or the plan's value "
        "(CHURN_PLAN_VALUES), "
        "whichever is larger."
    )
    expected_loss: float = Field(description="score x value: the value expected to leave.")
    model_version: str
    last_event_time: str
    evaluated_at: str
    stored_score: StoredScore | None
    explanations: list[Explanation] = Field(description="Top 5 contributions by magnitude.")
    features: dict[str, float]


class AtRiskItem(BaseModel):
    customer_id: str
    score: float
    band: Band | None
    model_version: str | None
    scored_at: str | None
    last_event_time: str | None


SCORING_TIME = (
    "What 'now' is for scoring, ISO 8601 UTC: the clock, or CHURN_AS_OF when set. Ages "
    "such as 'last event 3 days ago' are measured from it."
)
AS_OF = "CHURN_AS_OF when scoring at a fixed time (a backfill of old events), else null."


class AtRiskResponse(BaseModel):
    """Customers by their latest stored score, highest first."""

    model_config = _example(
        {
            "total": 1204,
            "items": [
                {
                    "customer_id": "C00042",
                    "score": 0.95,
                    "band": "high",
                    "model_version": "v20260105T101500-3fa9c1",
                    "scored_at": "2026-03-01T11:02:13.480Z",
                    "last_event_time": "2026-02-18T09:12:44Z",
                }
            ],
            "scoring_time": "2026-03-01T11:02:14.020Z",
            "as_of": None,
        }
    )

    total: int = Field(description="Customers matching the filter (all pages).")
    items: list[AtRiskItem]
    scoring_time: str = Field(description=SCORING_TIME)
    as_of: str | None = Field(description=AS_OF)


class CampaignOut(BaseModel):
    contact_cost: float = Field(description="Cost of one contact.")
    incentive: float = Field(description="Paid to each contacted churner who accepts.")
    save_rate: float = Field(description="Share of contacted churners who accept and stay.")


class ContactItem(BaseModel):
    customer_id: str
    score: float = Field(description="The stored churn score the ranking used.")
    band: Band | None
    action: str | None = Field(description="The retention action for the band.")
    value: float = Field(description="Value over the model's label horizon (stored score).")
    expected_loss: float = Field(description="score x value.")
    gain: float = Field(
        description="Expected net gain of contacting: score x save_rate x (value - incentive) "
        "- contact_cost."
    )
    expected_spend: float = Field(
        description="Expected cost of the contact: contact_cost + score x save_rate x incentive."
    )
    reasons: list[Explanation] = Field(
        description="The champion's top contributions at request time."
    )


class ContactListResponse(BaseModel):
    """Customers to contact today, by expected net gain, within the budget."""

    model_config = _example(
        {
            "campaign": {"contact_cost": 1.0, "incentive": 10.0, "save_rate": 0.3},
            "budget": 500.0,
            "max_contacts": 100,
            "count": 1,
            "candidates": 87,
            "scanned": 4339,
            "total_gain": 51.3,
            "total_spend": 3.85,
            "items": [
                {
                    "customer_id": "C00042",
                    "score": 0.95,
                    "band": "high",
                    "action": "retention offer",
                    "value": 180.5,
                    "expected_loss": 171.48,
                    "gain": 47.59,
                    "expected_spend": 3.85,
                    "reasons": _EXPLANATIONS_EXAMPLE,
                }
            ],
        }
    )

    campaign: CampaignOut
    budget: float | None = Field(description="The budget asked for (null: none).")
    max_contacts: int
    count: int = Field(description="Contacts listed.")
    candidates: int = Field(description="Stored customers with a positive expected gain.")
    scanned: int = Field(description="Stored customers read.")
    total_gain: float
    total_spend: float
    items: list[ContactItem]


class RiskDistribution(BaseModel):
    """Stored scores in ten bins of width 0.1 (the last includes 1.0)."""

    model_config = _example(
        {
            "bins": [round(i / 10, 1) for i in range(11)],
            "counts": [310, 220, 160, 120, 90, 70, 60, 50, 40, 30],
            "bands": {"high": 120, "medium": 240, "low": 790},
            "band_cutoffs": {"medium": 0.4, "high": 0.7},
            "customers": 1150,
            "scoring_time": "2011-12-10T00:00:00.000Z",
            "as_of": "2011-12-10T00:00:00.000Z",
        }
    )

    bins: list[float]
    counts: list[int]
    bands: dict[str, int] | None = Field(
        description="Customers per band by the champion's cut-offs applied to the stored "
        "scores (null without a champion)."
    )
    band_cutoffs: dict[str, float] | None
    customers: int
    scoring_time: str = Field(description=SCORING_TIME)
    as_of: str | None = Field(description=AS_OF)


class ScoreRequest(BaseModel):
    """One row of features; every feature of the champion is required, no others (the
    OpenAPI document lists them: :mod:`serving.openapi`)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"features": _FEATURES_EXAMPLE}]}
    )

    features: dict[str, FiniteNumber]


class ScoreResponse(BaseModel):
    model_config = _example(
        {
            "score": 0.97,
            "band": "high",
            "action": "retention offer",
            "model_version": "v20260105T101500-3fa9c1",
            "explanations": _EXPLANATIONS_EXAMPLE,
        }
    )

    score: float
    band: Band
    action: str
    model_version: str
    explanations: list[Explanation]


class BatchRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId | None = None
    features: dict[str, FiniteNumber]


class ScoreBatchRequest(BaseModel):
    """Up to 10,000 rows, scored in one vectorised call."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"rows": [{"customer_id": "C00042", "features": _FEATURES_EXAMPLE}]}]
        },
    )

    rows: list[BatchRow] = Field(min_length=1, max_length=MAX_BATCH_ROWS)


class BatchItem(BaseModel):
    index: int
    customer_id: str | None
    score: float
    band: Band
    action: str


class ScoreBatchResponse(BaseModel):
    model_config = _example(
        {
            "model_version": "v20260105T101500-3fa9c1",
            "count": 1,
            "items": [
                {
                    "index": 0,
                    "customer_id": "C00042",
                    "score": 0.97,
                    "band": "high",
                    "action": "retention offer",
                }
            ],
        }
    )

    model_version: str
    count: int
    items: list[BatchItem]


_MANIFEST_EXAMPLE = {
    "version": "v20260105T101500-3fa9c1",
    "kind": "linear",
    "sha256": "9f2c0d5e6b1a4c3f8e7d6c5b4a3928171605f4e3d2c1b0a998877665544332211",
    "created_at": "2026-01-05T10:15:00Z",
    "feature_names": ["sessions_7d", "days_since_last_activity", "error_rate_30d"],
    "metrics": {"roc_auc": 0.84},
    "training": {"source": "simulation", "horizon_days": 30},
    "status": "champion",
}


class ModelManifestOut(BaseModel):
    """A registered version (``manifest.json``, status reconciled with the champion)."""

    model_config = _example(_MANIFEST_EXAMPLE)

    version: str
    kind: str
    sha256: str
    created_at: str
    feature_names: list[str]
    metrics: dict[str, Any]
    training: dict[str, Any]
    status: Literal["candidate", "champion", "retired"]


class ModelsResponse(BaseModel):
    model_config = _example(
        {
            "champion": "v20260105T101500-3fa9c1",
            "models": [_MANIFEST_EXAMPLE],
            "decisions": [
                {
                    "decided_at": "2026-01-12T03:00:00Z",
                    "decision": "retrain",
                    "reason": "drift_share 0.62 >= 0.5",
                }
            ],
        }
    )

    champion: str | None
    models: list[ModelManifestOut] = Field(description="Every registered version, oldest first.")
    decisions: list[dict[str, Any]] = Field(
        description=f"Retraining decisions recorded by monitoring, newest first (at most "
        f"{MAX_DECISIONS}); empty until monitoring writes any."
    )


class HealthResponse(BaseModel):
    model_config = _example({"status": "ok"})

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    model_config = _example(
        {"status": "ready", "model_version": "v20260105T101500-3fa9c1", "reasons": []}
    )

    status: Literal["ready", "not ready"]
    model_version: str | None
    reasons: list[str]


class DriftReportEntry(BaseModel):
    """One entry of ``index.json`` (see :mod:`serving.routes.reports`)."""

    model_config = ConfigDict(extra="allow")

    id: str
    created_at: str | None = None
    drift_share: float | None = None
    dataset_drift: bool | None = None
    html: str
    json_report: str | None = Field(None, alias="json")


class DriftReportsResponse(BaseModel):
    model_config = _example(
        {
            "reports": [
                {
                    "id": "20260301T000000Z",
                    "created_at": "2026-03-01T00:00:00Z",
                    "drift_share": 0.18,
                    "dataset_drift": False,
                    "html": "20260301T000000Z.html",
                    "json": "20260301T000000Z.json",
                }
            ]
        }
    )

    reports: list[DriftReportEntry] = Field(description="Newest first.")


class PromoteResponse(BaseModel):
    model_config = _example(
        {
            "champion": "v20260105T101500-3fa9c1",
            "previous": "v20251201T080000-1b2c3d",
            "promoted_at": "2026-01-05T11:00:00Z",
        }
    )

    champion: str
    previous: str | None
    promoted_at: str


class RetrainBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "campaign launched; retrain on new data"}]},
    )

    reason: str = Field("requested through the API", min_length=1, max_length=500)


class RetrainRecord(BaseModel):
    """What is pushed onto ``{prefix}:retrain:requests`` for the trainer."""

    model_config = _example(
        {
            "requested_at": "2026-03-01T12:00:00Z",
            "requested_by": "api",
            "reason": "campaign launched; retrain on new data",
        }
    )

    requested_at: str
    requested_by: Literal["api"]
    reason: str
