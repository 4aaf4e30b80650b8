"""The promotion gate: better on the same validation rows, or no promotion without --force."""

from __future__ import annotations

import numpy as np

from core.model import BandCutoffs, LinearModel
from core.registry import ModelManifest
from offline.dataset import Dataset
from offline.gate import gate_from_manifests, gate_on_window


def window(n: int = 2000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(np.int8)
    cutoffs = np.where(np.arange(n) % 2 == 0, 1_700_000_000, 1_702_592_000)
    return Dataset(X, y, [f"c{i}" for i in range(n)], cutoffs.astype(np.int64), ("a", "b", "c"))


def linear(version: str, names: tuple[str, ...], weights: tuple[float, ...]) -> LinearModel:
    k = len(names)
    return LinearModel(
        version=version, feature_names=names, coef=weights, intercept=0.0, mean=(0.0,) * k,
        scale=(1.0,) * k, lower=(-9.0,) * k, upper=(9.0,) * k,
        bands=BandCutoffs(medium=0.5, high=0.8),
    )  # fmt: skip


def test_no_champion_passes() -> None:
    valid = window()
    result = gate_on_window(valid.X[:, 0], valid, None)
    assert result.passed and result.champion is None and len(result.window) == 2


def test_candidate_must_beat_the_champion_on_the_same_rows() -> None:
    valid = window()
    good = valid.X[:, 0]  # the true signal
    weak = linear("v-weak", ("b",), (1.0,))  # noise
    strong = linear("v-strong", ("c", "a"), (0.0, 3.0))  # the signal, other feature order
    beaten = gate_on_window(good, valid, weak)
    assert beaten.passed and beaten.champion == "v-weak"
    assert beaten.candidate_roc_auc is not None and beaten.champion_roc_auc is not None
    assert beaten.candidate_roc_auc > beaten.champion_roc_auc
    tie = gate_on_window(good, valid, strong)  # same ranking: not better
    assert not tie.passed and tie.champion_roc_auc == tie.candidate_roc_auc
    assert "does not beat" in tie.reason
    assert not gate_on_window(good, valid, weak, min_gain=0.9).passed


def test_a_champion_with_unknown_features_cannot_be_beaten_silently() -> None:
    valid = window()
    stranger = linear("v-old", ("a", "retired_feature"), (1.0, 1.0))
    result = gate_on_window(valid.X[:, 0], valid, stranger)
    assert not result.passed and "retired_feature" in result.reason


def manifest(version: str, auc: float, gate: dict | None = None, sha: str = "d1") -> ModelManifest:
    training = {
        "data_sha256": sha,
        "label": "no_purchase",
        "horizon_days": 90,
        "valid_cutoffs": ["2011-08-01T00:00:00Z", "2011-09-01T00:00:00Z"],
    }
    metrics: dict = {"roc_auc": auc}
    if gate is not None:
        metrics["gate"] = gate
    return ModelManifest(
        version, "linear", "0" * 64, "2026-01-01T00:00:00Z", ("a",), metrics, training
    )


def test_manifest_gate_uses_the_training_time_comparison_with_this_champion() -> None:
    champion = manifest("v1", 0.70, sha="other-data")
    recorded = {"champion": "v1", "passed": False, "reason": "worse", "window": []}
    assert not gate_from_manifests(manifest("v2", 0.99, recorded, sha="x"), champion).passed
    recorded = {**recorded, "passed": True, "reason": "better"}
    assert gate_from_manifests(manifest("v2", 0.10, recorded, sha="x"), champion).passed


def test_manifest_gate_compares_models_validated_on_the_same_data() -> None:
    champion = manifest("v1", 0.75)
    assert gate_from_manifests(manifest("v2", 0.76), champion).passed
    assert not gate_from_manifests(manifest("v2", 0.74), champion).passed
    assert not gate_from_manifests(manifest("v2", 0.76), champion, min_gain=0.02).passed
    other_data = gate_from_manifests(manifest("v2", 0.99, sha="d2"), champion)
    assert not other_data.passed and "never compared" in other_data.reason
    assert gate_from_manifests(manifest("v2", 0.1), None).passed  # no champion yet
