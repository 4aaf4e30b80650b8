"""The scoring protocol and the models that implement it.

Every model is used the same way by the worker, the API and the trainer, through
:class:`Scorer`: ``score_many(X)`` for a matrix whose columns follow ``feature_names``,
``score_one(features)`` for a mapping, ``band_of(score)`` (or ``bands.bands_of(scores)``)
for the risk band, and ``contributions`` / ``contributions_many`` for the reasons. A model
is stored as JSON (no pickles): its parameters, feature order and band cut-offs, so an
artifact can be read, diffed and checked by hash.

:class:`Scorer` is what the worker (``stream``), the API (``serving``), :mod:`core.risk`
and the trainer's promotion gate type against; they use nothing else of a model.
:class:`LinearModel` is its one implementation. The other models in the project are not
scorers: the river challenger (``offline.challenger``) becomes a :class:`LinearModel`
before it can serve, the trainer's ``LinearFit`` scores through one, and the gradient
boosting in ``offline.transactions`` is a comparison that is never registered. The
protocol stays so that another model family can serve without touching the worker or the
API; ``tests/unit/contracts/test_scorer_contract.py`` is the suite every implementation
(and every way of making one) must pass. The registry stores :class:`LinearModel`
artifacts (``to_json`` / :func:`load_model`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

BANDS = ("low", "medium", "high")
TRANSFORMS = ("identity", "signed_log1p")


def apply_transform(name: str, values: np.ndarray) -> np.ndarray:
    """A linear model's feature transform: ``identity`` or ``signed_log1p``
    (``sign(x) * log(1 + |x|)``, which tames counts and money spanning orders of magnitude).

    >>> apply_transform("signed_log1p", np.array([-(np.e - 1), 0.0, np.e - 1])).round(6).tolist()
    [-1.0, 0.0, 1.0]
    """
    if name == "identity":
        return values
    if name == "signed_log1p":
        out: np.ndarray = np.sign(values) * np.log1p(np.abs(values))
        return out
    raise ValueError(f"unknown feature transform {name!r} (known: {', '.join(TRANSFORMS)})")


@dataclass(frozen=True)
class BandCutoffs:
    """Scores at or above ``high`` are High risk, at or above ``medium`` Medium, else Low.

    >>> BandCutoffs(medium=0.3, high=0.6).band_of(0.45)
    'medium'
    """

    medium: float
    high: float

    def band_of(self, score: float) -> str:
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"

    def bands_of(self, scores: np.ndarray) -> list[str]:
        codes = (scores >= self.medium).astype(np.int8) + (scores >= self.high).astype(np.int8)
        return [BANDS[c] for c in codes.tolist()]


class Scorer(Protocol):
    """What the worker and the API need from a model. Every member is read-only (frozen
    models satisfy it); features are float64, scores churn probabilities in ``[0, 1]``,
    contributions signed log-odds terms in ``feature_names`` order."""

    @property
    def version(self) -> str: ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in the column order of ``score_many``."""
        ...

    @property
    def bands(self) -> BandCutoffs:
        """The risk band cut-offs (``bands.bands_of(scores)`` bands many scores)."""
        ...

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Training facts (label horizon, retention days...), read by the valuation."""
        ...

    def score_many(self, features: np.ndarray) -> np.ndarray:
        """Churn probabilities for rows of features in ``feature_names`` order."""
        ...

    def score_one(self, features: Mapping[str, float]) -> float:
        """The churn probability of one row of named features (every feature required)."""
        ...

    def band_of(self, score: float) -> str: ...

    def contributions(self, features: Mapping[str, float]) -> dict[str, float]:
        """Signed contribution of each feature to the score's log-odds."""
        ...

    def contributions_many(self, features: np.ndarray) -> np.ndarray:
        """:meth:`contributions` of each row of ``features``, one column per feature."""
        ...


@dataclass(frozen=True)
class LinearModel:
    """A standardised logistic model evaluated with numpy (a dot product and a sigmoid).

    ``score = sigmoid(intercept + sum(coef * (f(x) - mean) / scale))``. Features are clipped
    to ``[lower, upper]`` (the training range) first, so an outlier cannot dominate, then
    transformed by ``f`` (``transform``: ``identity`` or ``signed_log1p``); ``mean`` and
    ``scale`` are those of the transformed training features.

    >>> m = LinearModel(version="v1", feature_names=("a", "b"), coef=(1.0, -2.0),
    ...                 intercept=0.0, mean=(0.0, 0.0), scale=(1.0, 1.0),
    ...                 lower=(-10.0, -10.0), upper=(10.0, 10.0),
    ...                 bands=BandCutoffs(medium=0.3, high=0.6))
    >>> round(m.score_one({"a": 1.0, "b": 0.0}), 3), m.band_of(0.7)
    (0.731, 'high')
    >>> m.contributions({"a": 1.0, "b": 1.0})
    {'a': 1.0, 'b': -2.0}
    """

    version: str
    feature_names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    bands: BandCutoffs
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "linear"
    transform: str = "identity"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown feature transform {self.transform!r}")
        n = len(self.feature_names)
        for name in ("coef", "mean", "scale", "lower", "upper"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n} features")

    @cached_property
    def _weights(self) -> np.ndarray:
        """Coefficients on the raw (unscaled) features."""
        weights: np.ndarray = np.asarray(self.coef) / np.asarray(self.scale)
        return weights

    @cached_property
    def _bias(self) -> float:
        return self.intercept - float(np.dot(self._weights, self.mean))

    @cached_property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.mean)

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.lower), np.asarray(self.upper)

    def _prepared(self, features: np.ndarray) -> np.ndarray:
        return apply_transform(self.transform, np.clip(features, *self._bounds))

    def score_many(self, features: np.ndarray) -> np.ndarray:
        z = self._prepared(features) @ self._weights + self._bias
        scores: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return scores

    def row(self, features: Mapping[str, float]) -> np.ndarray:
        missing = [name for name in self.feature_names if name not in features]
        if missing:
            raise KeyError(f"missing features: {', '.join(missing)}")
        return np.array([features[name] for name in self.feature_names], dtype=np.float64)

    def score_one(self, features: Mapping[str, float]) -> float:
        return float(self.score_many(self.row(features)[None, :])[0])

    def band_of(self, score: float) -> str:
        return self.bands.band_of(score)

    def contributions(self, features: Mapping[str, float]) -> dict[str, float]:
        """Exact: each feature's term in the log-odds, relative to the training mean."""
        terms = self.contributions_many(self.row(features)[None, :])[0]
        return dict(zip(self.feature_names, terms.tolist(), strict=True))

    def contributions_many(self, features: np.ndarray) -> np.ndarray:
        """:meth:`contributions` of each row of ``features`` (columns in
        ``feature_names`` order), rounded to 6 decimals."""
        terms: np.ndarray = ((self._prepared(features) - self._mean) * self._weights).round(6)
        return terms

    # --- storage -----------------------------------------------------------------------

    def to_json(self) -> str:
        document = asdict(self)
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LinearModel:
        document = json.loads(text)
        if document.get("kind") != "linear":
            raise ValueError(f"not a linear model artifact (kind={document.get('kind')!r})")
        document["bands"] = BandCutoffs(**document["bands"])
        for name in ("feature_names", "coef", "mean", "scale", "lower", "upper"):
            document[name] = tuple(document[name])
        return cls(**document)


def artifact_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(path: Path, expected_sha256: str | None = None) -> LinearModel:
    """Read a model artifact, refusing one whose hash differs from ``expected_sha256``."""
    if expected_sha256 is not None:
        actual = artifact_sha256(path)
        if actual != expected_sha256:
            raise ValueError(f"{path}: sha256 {actual} does not match {expected_sha256}")
    return LinearModel.from_json(path.read_text(encoding="utf-8"))


def feature_rows(names: Sequence[str], rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Rows of named features as a matrix in ``names`` order."""
    return np.array([[row[name] for name in names] for row in rows], dtype=np.float64)
