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

from core.events import ID_MAX_LENGTH

Band = Literal["low", "medium", "high"]
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
CustomerId = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH)]

MAX_BATCH_ROWS = 10_000
MAX_DECISIONS = 100

_FEATURES_EXAMPLE: dict[str, Any] = {
    "sessions_7d": 1.0,
    "days_since_last_activity": 12.4,
    "error_rate_30d": 0.08,
}
EXPLANATIONS_EXAMPLE = [
    {"feature": "days_since_last_activity", "value": 12.4, "contribution": 4.34},
    {"feature": "sessions_7d", "value": 1.0, "contribution": -0.4},
    {"feature": "error_rate_30d", "value": 0.08, "contribution": 0.16},
]


def example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer except 422 (see ``HTTPValidationError``)."""

    model_config = example({"detail": "customer 'C00042' is unknown: no events seen"})

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

    model_config = example(
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
            "explanations": EXPLANATIONS_EXAMPLE,
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

    model_config = example(
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


class RiskDistribution(BaseModel):
    """Stored scores in ten bins of width 0.1 (the last includes 1.0)."""

    model_config = example(
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
    model_config = example(
        {
            "score": 0.97,
            "band": "high",
            "action": "retention offer",
            "model_version": "v20260105T101500-3fa9c1",
            "explanations": EXPLANATIONS_EXAMPLE,
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
    model_config = example(
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

    model_config = example(_MANIFEST_EXAMPLE)

    version: str
    kind: str
    sha256: str
    created_at: str
    feature_names: list[str]
    metrics: dict[str, Any]
    training: dict[str, Any]
    status: Literal["candidate", "champion", "retired"]


class ModelsResponse(BaseModel):
    model_config = example(
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
    model_config = example({"status": "ok"})

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    model_config = example(
        {"status": "ready", "model_version": "v20260105T101500-3fa9c1", "reasons": []}
    )

    status: Literal["ready", "not ready"]
    model_version: str | None
    reasons: list[str]


class DriftReportEntry(BaseModel):
    """One entry of ``index.json`` (see :mod:`core.report_index`)."""

    model_config = ConfigDict(extra="allow")

    id: str
    created_at: str | None = None
    drift_share: float | None = None
    dataset_drift: bool | None = None
    html: str
    json_report: str | None = Field(None, alias="json")


class DriftReportsResponse(BaseModel):
    model_config = example(
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
    model_config = example(
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

    model_config = example(
        {
            "requested_at": "2026-03-01T12:00:00Z",
            "requested_by": "api",
            "reason": "campaign launched; retrain on new data",
        }
    )

    requested_at: str
    requested_by: Literal["api"]
    reason: str
