"""Scoring features supplied by the caller with the champion model (nothing is stored).

Every feature of the champion is required and no other name is accepted; values must
be finite numbers (JSON has no NaN or Infinity: such bodies are refused as JSON decode
errors). A 422 names the place: ``features: missing 'sessions_7d'`` or
``rows[3].features: unknown 'foo'``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from fastapi import APIRouter, Response

from core.model import Scorer
from core.risk import top_contributions
from serving.deps import ChampionDep, StateDep
from serving.routes import (
    OrjsonRoute,
    count_scores,
    errors,
    explanations,
    json_response,
    unprocessable,
)
from serving.schemas import (
    MAX_BATCH_ROWS,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
)

router = APIRouter(tags=["scoring"], route_class=OrjsonRoute)

BAD_BODY = "The body could not be read as text (e.g. it is not UTF-8)."

MAX_REPORTED_ERRORS = 100
_NAMES_SHOWN = 10


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(f"'{name}'" for name in names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def feature_problems(model: Scorer, features: Mapping[str, float]) -> list[tuple[str, str]]:
    """(message, type) for each way ``features`` differs from the model's feature names."""
    problems = []
    missing = [name for name in model.feature_names if name not in features]
    if missing:
        problems.append((f"missing {_quoted(missing)}", "missing_feature"))
    unknown = sorted(set(features) - set(model.feature_names))
    if unknown:
        problems.append(
            (
                f"unknown {_quoted(unknown)} (not a feature of model {model.version})",
                "extra_feature",
            )
        )
    return problems


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=errors(e400=BAD_BODY, e503="No champion model."),
    summary="Score one row of features",
)
def score(body: ScoreRequest, state: StateDep, model: ChampionDep) -> Response:
    """The champion's score, band, action and top five contributions for ``features``."""
    problems = feature_problems(model, body.features)
    if problems:
        raise unprocessable([(("features",), message, kind) for message, kind in problems])
    value = model.score_one(body.features)
    band = model.band_of(value)
    count_scores((band,))
    ranked = top_contributions(model.contributions(body.features))
    return json_response(
        {
            "score": value,
            "band": band,
            "action": state.api.retention_actions[band],
            "model_version": model.version,
            "explanations": explanations(ranked, body.features),
        }
    )


@router.post(
    "/score/batch",
    response_model=ScoreBatchResponse,
    responses=errors(e400=BAD_BODY, e503="No champion model."),
    summary=f"Score up to {MAX_BATCH_ROWS:,} rows at once",
)
def score_batch(body: ScoreBatchRequest, state: StateDep, model: ChampionDep) -> Response:
    """Scores, bands and actions of every row, in one vectorised call (no explanations:
    use ``POST /score`` for those). Items keep the order of ``rows``."""
    names = model.feature_names
    expected = frozenset(names)
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    for index, row in enumerate(body.rows):
        if row.features.keys() != expected:
            problems.extend(
                (("rows", index, "features"), message, kind)
                for message, kind in feature_problems(model, row.features)
            )
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
    if problems:
        raise unprocessable(problems[:MAX_REPORTED_ERRORS])
    values = _row_getter(names)
    matrix = np.array([values(row.features) for row in body.rows], dtype=np.float64)
    scores = model.score_many(matrix)
    bands = model.bands.bands_of(scores)
    count_scores(bands)
    actions = state.api.retention_actions
    items = [
        {
            "index": index,
            "customer_id": row.customer_id,
            "score": value,
            "band": band,
            "action": actions[band],
        }
        for index, (row, value, band) in enumerate(
            zip(body.rows, scores.tolist(), bands, strict=True)
        )
    ]
    return json_response({"model_version": model.version, "count": len(items), "items": items})


def _row_getter(names: Sequence[str]) -> Callable[[Mapping[str, float]], Any]:
    """A row's values in ``names`` order (``itemgetter`` does it in C; one name needs a list)."""
    if len(names) == 1:
        only = names[0]
        return lambda features: [features[only]]
    return itemgetter(*names)
