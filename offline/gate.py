"""The promotion gate: a candidate replaces the champion only if it is better on the same
recent validation window.

"Better" means a higher ROC AUC than the champion's on the very same rows (customers and
cutoffs, labels and features computed the same way), by more than ``min_gain``. Two ways to
get there:

* at training time, :func:`gate_on_window` scores the current champion on the candidate's
  validation rows (the rows carry every feature the code defines, so a champion with
  another feature list can still be scored) and records the comparison in the candidate's
  metrics (``metrics["gate"]``);
* at ``churnstream models promote V``, :func:`gate_from_manifests` accepts that record when
  it was made against the champion in place now, or compares the stored ROC AUC of two
  models validated on the same data (same data fingerprint, label, horizon and cutoffs).

Anything else is refused (promotion then needs ``--force``), and so is a champion that
cannot be scored on the window (a feature this code no longer defines).

A champion whose artifact cannot be loaded (e.g. its directory was deleted while the Redis
pointer stayed) blocks nothing: the gate counts it as no champion and says so in its reason
and in ``unloadable_champion`` (:func:`without_unloadable_champion`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from core.model import Scorer
from core.registry import ModelManifest
from offline.dataset import Dataset

WINDOW_KEYS = ("data_sha256", "label", "horizon_days", "valid_cutoffs")


@dataclass(frozen=True)
class GateResult:
    """The decision and what it rests on (AUCs on ``window``, the validation cutoffs)."""

    passed: bool
    reason: str
    champion: str | None = None
    candidate_roc_auc: float | None = None
    champion_roc_auc: float | None = None
    window: list[str] = field(default_factory=list)
    min_gain: float = 0.0
    unloadable_champion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def without_unloadable_champion(result: GateResult, version: str, problem: str) -> GateResult:
    """``result``, a decision made with no champion, recording that champion ``version``
    was set aside because it cannot be loaded (``problem`` says why)."""
    return replace(
        result,
        reason=f"{result.reason}: {problem}; it counts as no champion",
        unloadable_champion=version,
    )


def _window_of(valid: Dataset) -> list[str]:
    from datetime import UTC, datetime

    return [
        datetime.fromtimestamp(int(c), UTC).isoformat().replace("+00:00", "Z")
        for c in np.unique(valid.cutoffs).tolist()
    ]


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    return round(float(roc_auc_score(y, scores)), 6)


def gate_on_window(
    candidate_scores: np.ndarray,
    valid: Dataset,
    champion: Scorer | None,
    *,
    min_gain: float = 0.0,
) -> GateResult:
    """Compare the candidate (its scores on ``valid``) with ``champion`` scored on the same
    rows. ``valid.X`` must hold every feature the champion uses."""
    window = _window_of(valid)
    candidate = _auc(valid.y, candidate_scores)
    if champion is None:
        return GateResult(True, "no champion yet", None, candidate, None, window, min_gain)
    missing = [name for name in champion.feature_names if name not in valid.feature_names]
    if missing:
        return GateResult(
            False,
            f"champion {champion.version} cannot be scored on this window: it uses features "
            f"this code does not define ({', '.join(missing[:5])})",
            champion.version,
            candidate,
            None,
            window,
            min_gain,
        )
    columns = [valid.feature_names.index(name) for name in champion.feature_names]
    incumbent = _auc(valid.y, champion.score_many(valid.X[:, columns]))
    return _decide(candidate, incumbent, champion.version, window, min_gain)


def _decide(
    candidate: float, incumbent: float, champion: str, window: list[str], min_gain: float
) -> GateResult:
    if candidate > incumbent + min_gain:
        reason = f"ROC AUC {candidate:.4f} beats champion {champion}'s {incumbent:.4f}"
        return GateResult(True, reason, champion, candidate, incumbent, window, min_gain)
    reason = (
        f"ROC AUC {candidate:.4f} does not beat champion {champion}'s {incumbent:.4f}"
        + (f" by more than {min_gain:g}" if min_gain else "")
        + " on the same validation window"
    )
    return GateResult(False, reason, champion, candidate, incumbent, window, min_gain)


def gate_from_manifests(
    candidate: ModelManifest, champion: ModelManifest | None, *, min_gain: float = 0.0
) -> GateResult:
    """The gate for promoting a registered candidate (see the module docstring)."""
    if champion is None:
        return GateResult(True, "no champion yet", None, candidate.metrics.get("roc_auc"))
    if champion.version == candidate.version:
        return GateResult(True, f"{candidate.version} is already the champion", champion.version)
    recorded = candidate.metrics.get("gate") or {}
    if recorded.get("champion") == champion.version:
        return GateResult(
            bool(recorded.get("passed")),
            f"compared with {champion.version} at training time: {recorded.get('reason', '')}",
            champion.version,
            recorded.get("candidate_roc_auc"),
            recorded.get("champion_roc_auc"),
            list(recorded.get("window") or []),
            float(recorded.get("min_gain", 0.0)),
        )
    same = all(
        candidate.training.get(key) is not None
        and candidate.training.get(key) == champion.training.get(key)
        for key in WINDOW_KEYS
    )
    ours, theirs = candidate.metrics.get("roc_auc"), champion.metrics.get("roc_auc")
    if same and ours is not None and theirs is not None:
        window = list(candidate.training.get("valid_cutoffs") or [])
        return _decide(float(ours), float(theirs), champion.version, window, min_gain)
    return GateResult(
        False,
        f"{candidate.version} was never compared with champion {champion.version} on the same "
        "validation window (retrain it while this champion is in place, or use --force)",
        champion.version,
        ours,
    )
