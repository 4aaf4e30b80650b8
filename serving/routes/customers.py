"""Customers' churn risk: one customer now, the list most at risk, and the distribution.

``/customers/{id}/risk`` evaluates the live features at request time, so a silent
customer's risk rises without waiting for the worker. The served path is
:mod:`serving.fast_path` (which answers the plain case before FastAPI's per-request
machinery; this module's route answers the rest) → :func:`risk_answer` →
:class:`serving.risk_batcher.RiskBatcher`, which gathers concurrent lookups into one
Redis round trip (``HGETALL`` per customer, pipelined) and one feature evaluation →
:func:`core.risk.assess_stored` (a numpy dot product). The list and the distribution read
the stored scores through the store (:class:`core.score_reads.ScoreReads`): every shard's
risk sorted sets, merged, and each listed customer's hash.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Response

from core.events import ID_MAX_LENGTH
from core.model import BANDS, Scorer
from core.score_reads import RankedCustomer, band_ranges
from core.targeting import Valuation, value_fields
from serving.deps import ApiState, ChampionDep, StateDep
from serving.routes import count_scores, errors, explanations, iso_utc, json_response
from serving.schemas import AtRiskResponse, Band, RiskDistribution, RiskResponse

router = APIRouter(tags=["customers"])

BINS = [round(i / 10, 1) for i in range(11)]

CustomerIdPath = Annotated[
    str,
    Path(
        min_length=1, max_length=ID_MAX_LENGTH, description="As in the events.", examples=["C00042"]
    ),
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
    page = state.store.scores.at_risk(band, offset, limit)
    items = [_item(customer) for customer in page.customers]
    return json_response({"total": page.total, "items": items, **scoring_times(state)})


def scoring_times(state: ApiState) -> dict[str, str | None]:
    """``scoring_time``: what "now" is for scoring (the clock, or ``CHURN_AS_OF``), and
    ``as_of``: ``CHURN_AS_OF`` or null; ISO 8601 UTC. The dashboard measures ages such as
    "last event 3 days ago" from the scoring time."""
    as_of = state.settings.as_of
    return {
        "scoring_time": iso_utc(state.risk.clock()),
        "as_of": None if as_of is None else iso_utc(as_of.timestamp()),
    }


def _item(customer: RankedCustomer) -> dict[str, Any]:
    last_event = customer.last_event_time
    return {
        "customer_id": customer.customer_id,
        "score": customer.score,
        "band": customer.band,
        "model_version": customer.model_version,
        "scored_at": None if customer.scored_at is None else iso_utc(customer.scored_at),
        "last_event_time": None if last_event is None else iso_utc(last_event, "seconds"),
    }


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
    reads, model = state.store.scores, state.watcher.model
    ranges: list[tuple[object, object]] = [
        (lo, hi if hi == 1.0 else f"({hi}") for lo, hi in itertools.pairwise(BINS)
    ]
    bands = cutoffs = None
    if model is None:
        counts = reads.count_in(ranges)
    else:
        by_band = band_ranges(model.bands)
        counts = reads.count_in([*ranges, *by_band.values()])
        band_n = dict(zip(by_band, counts[len(ranges) :], strict=True))
        bands = {band: band_n[band] for band in reversed(BANDS)}  # high first
        cutoffs = {"medium": model.bands.medium, "high": model.bands.high}
    return json_response(
        {
            "bins": BINS,
            "counts": counts[: len(ranges)],
            "bands": bands,
            "band_cutoffs": cutoffs,
            "customers": reads.scored(),
            **scoring_times(state),
        }
    )
