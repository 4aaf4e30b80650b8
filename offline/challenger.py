"""An online challenger: a river model that learns as labels mature, scored in shadow.

The champion is retrained in batches. The challenger learns continuously instead: the
point-in-time rows of each weekly cutoff (features at the cutoff, label from the horizon
after it, built by :mod:`offline.dataset` from the event archive) are **scored** by the
challenger and by the champion — the shadow comparison, on exactly the same rows — by a
challenger that has learned only the labels matured by that cutoff, and **learned** (one
row at a time) once their own label window has passed (prequential evaluation with the
label delay of live operation). Within one :meth:`OnlineChallenger.update` the delay is
exact; a cutoff first processed by a later update (the monitor processes each cutoff once
its label has matured) is scored by a model that has also learned the cutoffs of the
horizon before it, so its shadow figure is slightly optimistic there.

The challenger never serves. It becomes a candidate only through
:meth:`OnlineChallenger.to_linear_model`, which turns it into the same :class:`LinearModel`
artifact the trainer registers (river's running means and variances become ``mean`` and
``scale``; the clip at ±``CLIP_Z`` standard deviations becomes ``lower``/``upper``), so
the registry's promotion gate decides like for any other candidate.

State (the river pipeline, cutoffs learned, running metrics and the per-cutoff history)
is one pickle file written atomically (``<model_dir>/challenger/state.pkl``).
"""

from __future__ import annotations

import math
import os
import pickle
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from river import compose, linear_model, metrics, optim, preprocessing
from sklearn.metrics import roc_auc_score

from core import metrics as prom
from core.archive import EventArchive
from core.features import FEATURE_NAMES
from core.model import BandCutoffs, LinearModel, Scorer
from core.registry import ModelRegistry
from core.settings import Settings
from offline.dataset import LABEL_KINDS, Dataset, LabelKind, build_dataset

CLIP_Z = 5.0  # standardised features are clipped to ±5 standard deviations
STATE_FILE = "state.pkl"
CHALLENGER_DIR = "challenger"  # under CHURN_MODEL_DIR


def _clip(x: dict[str, float]) -> dict[str, float]:
    return {k: min(max(v, -CLIP_Z), CLIP_Z) for k, v in x.items()}


def new_pipeline(learning_rate: float = 0.02, l2: float = 1e-4) -> compose.Pipeline:
    """Standardise (running mean/variance), clip, logistic regression by SGD."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        compose.FuncTransformer(_clip),
        linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2),
    )


@dataclass
class CutoffResult:
    """The shadow comparison at one matured cutoff (AUCs are None with a single class)."""

    cutoff: str
    rows: int
    base_rate: float
    challenger_auc: float | None
    champion_auc: float | None


@dataclass
class OnlineChallenger:
    """The challenger's whole state. ``feature_names`` fixes the input order."""

    feature_names: tuple[str, ...]
    label: str
    horizon_days: int
    pipeline: compose.Pipeline = field(default_factory=new_pipeline)
    learned_cutoffs: list[int] = field(default_factory=list)
    rows_learned: int = 0
    challenger_auc: metrics.ROCAUC = field(default_factory=metrics.ROCAUC)
    champion_auc: metrics.ROCAUC = field(default_factory=metrics.ROCAUC)
    history: list[CutoffResult] = field(default_factory=list)

    # --- learning ------------------------------------------------------------------------

    def predict_many(self, X: np.ndarray) -> np.ndarray:
        """Churn probabilities for the rows of ``X`` (columns in ``feature_names`` order)."""
        return np.array([self.pipeline.predict_proba_one(self._row(x)).get(True, 0.0) for x in X])

    def update(
        self, dataset: Dataset, champion: Scorer | None, seed: int = 0
    ) -> list[CutoffResult]:
        """Score then learn every cutoff of ``dataset`` not learned yet, oldest first.

        Label delay is respected: a cutoff is scored by the model as it was when only the
        labels that had matured by then (cutoffs at least ``horizon_days`` older) were
        learned, as it would have been live; every cutoff of ``dataset`` is learned by the
        end (their labels have all matured)."""
        if tuple(dataset.feature_names) != self.feature_names:
            raise ValueError("the dataset's features differ from the challenger's")
        rng = np.random.default_rng(seed)
        horizon_s = self.horizon_days * 86_400
        waiting: list[tuple[int, np.ndarray, np.ndarray]] = []  # scored, label not yet known
        results = []
        for cutoff in np.unique(dataset.cutoffs).tolist():
            if cutoff in self.learned_cutoffs:
                continue
            while waiting and waiting[0][0] + horizon_s <= cutoff:
                self._learn(*waiting.pop(0), rng)
            rows = np.flatnonzero(dataset.cutoffs == cutoff)
            X, y = dataset.X[rows], dataset.y[rows].astype(bool)
            mine = self.predict_many(X)
            theirs = _champion_scores(champion, dataset.feature_names, X)
            for i in range(len(y)):
                self.challenger_auc.update(bool(y[i]), float(mine[i]))
                if theirs is not None:
                    self.champion_auc.update(bool(y[i]), float(theirs[i]))
            result = CutoffResult(
                cutoff=_iso(cutoff),
                rows=len(y),
                base_rate=round(float(y.mean()), 4) if len(y) else 0.0,
                challenger_auc=_auc(y, mine),
                champion_auc=None if theirs is None else _auc(y, theirs),
            )
            waiting.append((cutoff, X, y))
            self.history.append(result)
            results.append(result)
        for cutoff, X, y in waiting:
            self._learn(cutoff, X, y, rng)
        return results

    def _learn(self, cutoff: int, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        for i in rng.permutation(len(y)):
            self.pipeline.learn_one(self._row(X[i]), bool(y[i]))
        self.rows_learned += len(y)
        self.learned_cutoffs.append(cutoff)

    def _row(self, x: np.ndarray) -> dict[str, float]:
        return dict(zip(self.feature_names, x.tolist(), strict=True))

    # --- reporting and promotion ---------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Running figures (prequential ROC AUC of the challenger and of the champion on the
        same rows), counts and the per-cutoff history."""
        return {
            "label": self.label,
            "horizon_days": self.horizon_days,
            "cutoffs_learned": len(self.learned_cutoffs),
            "rows_learned": self.rows_learned,
            "challenger_roc_auc": _metric(self.challenger_auc),
            "champion_roc_auc": _metric(self.champion_auc),
            "history": [vars(r) for r in self.history],
        }

    def to_linear_model(self, version: str, bands: BandCutoffs) -> LinearModel:
        """The challenger as a registrable :class:`LinearModel` (same scores)."""
        scaler, _, logistic = self.pipeline.steps.values()
        mean = [float(scaler.means.get(n, 0.0)) for n in self.feature_names]
        std = [math.sqrt(float(scaler.vars.get(n, 0.0))) for n in self.feature_names]
        # river leaves a constant feature unscaled (x - mean); a scale of 1 does the same
        scale = [s if s > 0 else 1.0 for s in std]
        return LinearModel(
            version=version,
            feature_names=self.feature_names,
            coef=tuple(float(logistic.weights.get(n, 0.0)) for n in self.feature_names),
            intercept=float(logistic.intercept),
            mean=tuple(mean),
            scale=tuple(scale),
            lower=tuple(m - CLIP_Z * s if s > 0 else m for m, s in zip(mean, std, strict=True)),
            upper=tuple(m + CLIP_Z * s if s > 0 else m for m, s in zip(mean, std, strict=True)),
            bands=bands,
            metadata={
                "algorithm": "river StandardScaler | clip ±5 sd | LogisticRegression (SGD), "
                "learned online as labels matured",
                "label": self.label,
                "horizon_days": self.horizon_days,
                "rows_learned": self.rows_learned,
                "cutoffs_learned": [_iso(c) for c in self.learned_cutoffs[-2:]],
            },
        )

    # --- storage -------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write the state atomically to ``directory/state.pkl``."""
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / STATE_FILE
        temp = directory / f".tmp-{secrets.token_hex(4)}"
        with open(temp, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        return final

    @classmethod
    def load(cls, directory: Path) -> OnlineChallenger | None:
        """The saved state, or None when there is none yet."""
        path = directory / STATE_FILE
        if not path.exists():
            return None
        with open(path, "rb") as handle:
            state = pickle.load(handle)  # our own file, written by save()
        if not isinstance(state, cls):
            raise ValueError(f"{path} does not hold a challenger state")
        return state


def _champion_scores(
    champion: Scorer | None, names: tuple[str, ...], X: np.ndarray
) -> np.ndarray | None:
    if champion is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    if any(name not in index for name in champion.feature_names):
        return None  # the champion uses features this dataset lacks: no comparison
    return champion.score_many(X[:, [index[n] for n in champion.feature_names]])


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    return round(float(roc_auc_score(y, scores)), 4)


def _metric(metric: metrics.ROCAUC) -> float | None:
    value = metric.get()
    return (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else round(float(value), 4)
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).isoformat().replace("+00:00", "Z")


def matured_cutoffs(
    first: datetime, last: datetime, horizon_days: int, every_days: int = 7, warmup_days: int = 28
) -> list[datetime]:
    """Weekly (``every_days``) cutoffs at UTC midnight from ``warmup_days`` after ``first``
    whose label window ``(c, c + horizon]`` has ended by ``last``.

    >>> from datetime import timedelta
    >>> t0 = datetime(2026, 1, 1, 15, tzinfo=UTC)
    >>> [c.day for c in matured_cutoffs(t0, t0 + timedelta(days=60), 14)]
    [30, 6, 13]
    """
    start = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cutoffs = []
    cutoff = start + timedelta(days=warmup_days + 1)
    while cutoff + timedelta(days=horizon_days) <= last:
        cutoffs.append(cutoff)
        cutoff += timedelta(days=every_days)
    return cutoffs


def update_from_archive(
    settings: Settings, registry: ModelRegistry, every_days: int = 7
) -> tuple[OnlineChallenger, list[CutoffResult]] | None:
    """Bring the challenger up to date with the event archive: build the rows of every
    matured weekly cutoff it has not learned (label and horizon: the champion's), score
    them in shadow beside the champion, learn them, save the state and export the running
    ROC AUCs. ``None`` when there is no champion or no archive yet. A champion with another
    label or horizon than the saved state starts a fresh challenger."""
    pointer = registry.champion()
    if pointer is None:
        return None
    training = registry.manifest(pointer.version).training
    label = str(training.get("label", "cancellation_or_inactivity"))
    horizon = int(training.get("horizon_days", 14))
    if label not in LABEL_KINDS:
        raise ValueError(f"the champion's label {label!r} is not one the dataset builder knows")
    archive = EventArchive(settings.archive_dir)
    times = archive.frame(columns=("event_time",)).column("event_time")
    if len(times) == 0:
        return None
    first, last = times[0].as_py(), times[-1].as_py()
    directory = Path(settings.model_dir) / CHALLENGER_DIR
    state = OnlineChallenger.load(directory)
    if state is None or (state.label, state.horizon_days) != (label, horizon):
        state = OnlineChallenger(FEATURE_NAMES, label, horizon)
    todo = [
        c
        for c in matured_cutoffs(first, last, horizon, every_days)
        if int(c.timestamp()) not in state.learned_cutoffs
    ]
    results: list[CutoffResult] = []
    if todo:
        kind: LabelKind = label  # type: ignore[assignment]
        dataset = build_dataset(
            archive.read_events(end=todo[-1] + timedelta(days=horizon, seconds=1)),
            todo,
            horizon,
            label=kind,
            retention_days=settings.retention_days,
            observed_until=last,
        )
        results = state.update(dataset, registry.load_champion())
        state.save(directory)
    summary = state.summary()
    for model in ("challenger", "champion"):
        value = summary[f"{model}_roc_auc"]
        if value is not None:
            prom.MONITOR_CHALLENGER_ROC_AUC.labels(model).set(value)
    prom.MONITOR_CHALLENGER_ROWS.set(summary["rows_learned"])
    return state, results


def register_challenger(registry: ModelRegistry, state: OnlineChallenger) -> str:
    """Register the challenger as a candidate model (the champion's bands, its running
    ROC AUC as the metric, marked prequential); return the new version. It serves only once
    promoted."""
    from offline.train import new_version

    pointer = registry.champion()
    if pointer is None:
        raise ValueError("there is no champion to take the risk bands from")
    champion = registry.load(pointer.version)
    model = state.to_linear_model(new_version(), champion.bands)
    metrics = {"roc_auc": state.summary()["challenger_roc_auc"], "prequential": True}
    manifest = registry.register(model, metrics, {"source": "online challenger", **model.metadata})
    return manifest.version
