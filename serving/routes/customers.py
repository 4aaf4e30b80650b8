"""Customers' churn risk: one customer now, the list most at risk, and the distribution.

``/customers/{id}/risk`` evaluates the live features at request time (one HGETALL and a
numpy dot product, via :func:`core.risk.assess`), so a silent customer's risk rises
without waiting for the worker. The list and the distribution read the stored scores:
every shard's risk sorted sets, merged (:mod:`core.leaderboard`), and each customer's
hash (layout in :mod:`core.keys`).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Response

from core import leaderboard
from core.model import Scorer
from core.store import FeatureStore
from core.targeting import Valuation, value_fields
from serving.deps import ApiState, ChampionDep, StateDep
from serving.routes import count_scores, errors, explanations, iso_utc, json_response
from serving.schemas import AtRiskResponse, Band, RiskDistribution, RiskResponse

router = APIRouter(tags=["customers"])

_ITEM_FIELDS = ("band", "model_version", "scored_at", "last_event_time")
BINS = [round(i / 10, 1) for i in range(11)]

CustomerIdPath = Annotated[
    str, Path(min_length=1, max_length=128, description="As in the events.", examples=["C00042"])
]


RISK_PATH = "/customers/{customer_id}/risk"


@router.get(
    RISK_PATH,
    response_model=RiskResponse,
    responses=errors(e404="The customer is unknown (no events seen).", e503="No champion model."),
    summary="A customer's churn risk now, with the reasons",
)
async def customer_risk(
    customer_id: CustomerIdPath, state: StateDep, model: ChampionDep
) -> Response:
    """Live features at request time, the champion's score, band, recommended action, the
    top five signed contributions and the score the worker last stored."""
    status, content = await risk_answer(state, customer_id, model)
    return json_response(content, status_code=status)


async def risk_answer(
    state: ApiState, customer_id: str, model: Scorer
) -> tuple[int, dict[str, Any]]:
    """The status and JSON content of ``GET /customers/{id}/risk``: 200 with the
    assessment, or 404.

    Shared by the route above and :mod:`serving.fast_path`, which answers the same
    requests without FastAPI's per-request machinery."""
    # On the event loop, not in the thread pool; concurrent lookups share one Redis round
    # trip and one feature evaluation (serving.risk_batcher).
    result = await state.risk.assess(customer_id, model)
    if result is None:
        return 404, {"detail": f"customer '{customer_id}' is unknown: no events seen"}
    band = cast(str, result.band)
    stored = result.stored_score
    count_scores((band,))
    return 200, (
        {
            "customer_id": customer_id,
            "score": result.score,
            "band": band,
            "action": state.api.retention_actions[band],
            **value_fields(result, Valuation.from_settings(state.settings, model.metadata)),
            "model_version": result.model_version,
            "last_event_time": iso_utc(result.last_event_time, "seconds"),
            "evaluated_at": iso_utc(result.at),
            "stored_score": None
            if stored is None
            else {
                "score": stored.score,
                "band": stored.band,
                "model_version": stored.model_version,
                "scored_at": iso_utc(stored.scored_at),
            },
            "explanations": explanations(result.top_contributions, result.features),
            "features": result.features,
        }
    )


@router.get(
    "/customers/at-risk",
    response_model=AtRiskResponse,
    summary="Customers by stored risk, highest first",
)
def customers_at_risk(
    state: StateDep,
    band: Annotated[
        Band | None, Query(description="Only customers whose stored band is this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    """A page of the ranking by latest stored score, highest first; with ``band``, only
    the customers whose stored band is that one. Exactly ranked: each shard's top
    ``offset + limit`` are merged (one round trip per Redis node), so a page costs
    O(shards x (log n + offset + limit)), whatever the number of customers. Pages are read
    while the worker writes, so a customer re-scored meanwhile can move."""
    store = state.store
    total, page = leaderboard.top_page(store.redis, store.keys, band, offset, limit)
    return json_response({"total": total, "items": _items(store, page), **scoring_times(state)})


def scoring_times(state: ApiState) -> dict[str, str | None]:
    """``scoring_time``: what "now" is for scoring (the clock, or ``CHURN_AS_OF``), and
    ``as_of``: ``CHURN_AS_OF`` or null; ISO 8601 UTC. The dashboard measures ages such as
    "last event 3 days ago" from the scoring time."""
    as_of = state.settings.as_of
    return {
        "scoring_time": iso_utc(state.risk.clock()),
        "as_of": None if as_of is None else iso_utc(as_of.timestamp()),
    }


def _items(store: FeatureStore, page: list[tuple[bytes, float]]) -> list[dict[str, Any]]:
    if not page:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for member, _ in page:
        pipe.hmget(store.keys.customer(member.decode()), _ITEM_FIELDS)
    items = []
    for (member, score), (band, version, scored_at, last_event) in zip(
        page, pipe.execute(), strict=True
    ):
        items.append(
            {
                "customer_id": member.decode(),
                "score": score,
                "band": band.decode() if band else None,
                "model_version": version.decode() if version else None,
                "scored_at": iso_utc(float(scored_at)) if scored_at else None,
                "last_event_time": iso_utc(int(last_event), "seconds") if last_event else None,
            }
        )
    return items


@router.get(
    "/stats/risk-distribution",
    response_model=RiskDistribution,
    tags=["stats"],
    summary="How stored scores are distributed",
)
def risk_distribution(state: StateDep) -> Response:
    """Counts of stored scores in ten bins of width 0.1 (``[lo, hi)``, the last ``[0.9,
    1.0]``), one ZCOUNT each, and per band by the champion's cut-offs (null without a
    champion: stored bands of earlier models may differ slightly). With the scoring time
    and ``CHURN_AS_OF`` (null when scoring follows the clock)."""
    store, model = state.store, state.watcher.model
    ranges: list[tuple[object, object]] = [
        (lo, hi if hi == 1.0 else f"({hi}") for lo, hi in itertools.pairwise(BINS)
    ]
    if model is not None:
        cut = model.bands
        ranges += [(cut.high, "+inf"), (cut.medium, f"({cut.high}"), ("-inf", f"({cut.medium}")]
    counts = leaderboard.count_scores(store.redis, store.keys, ranges)
    results = [leaderboard.scored_customers(store.redis, store.keys), *counts]
    bands = cutoffs = None
    if model is not None:
        bands = dict(zip(("high", "medium", "low"), results[11:], strict=True))
        cutoffs = {"medium": model.bands.medium, "high": model.bands.high}
    return json_response(
        {
            "bins": BINS,
            "counts": results[1:11],
            "bands": bands,
            "band_cutoffs": cutoffs,
            "customers": results[0],
            **scoring_times(state),
        }
    )
