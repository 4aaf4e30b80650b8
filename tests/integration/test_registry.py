"""The model registry against a real Redis: register, promote, roll back, refuse tampered or
half-written artifacts, announce champions on pub/sub; and `churnstream train --bootstrap`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import typer
from typer.testing import CliRunner

from core.model import BandCutoffs, LinearModel
from core.registry import (
    ArtifactIntegrityError,
    ChampionPointer,
    ChampionState,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
)
from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def make_model(version: str, weight: float = 1.0) -> LinearModel:
    return LinearModel(
        version=version,
        feature_names=("a", "b"),
        coef=(weight, -0.5),
        intercept=-1.0,
        mean=(0.0, 1.0),
        scale=(1.0, 2.0),
        lower=(-5.0, -5.0),
        upper=(5.0, 5.0),
        bands=BandCutoffs(medium=0.3, high=0.6),
    )


@pytest.fixture
def registry_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"model_dir": tmp_path / "models"})


@pytest.fixture
def registry(registry_settings: Settings, redis_client: redis.Redis) -> ModelRegistry:
    return ModelRegistry(registry_settings, redis_client)


def register(registry: ModelRegistry, version: str, weight: float = 1.0) -> str:
    registry.register(make_model(version, weight), {"roc_auc": 0.8}, {"source": "test"})
    return version


def test_reference_sample_is_stored_and_checked(registry: ModelRegistry) -> None:
    reference = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [3.0, 4.0, 5.0], "score": [0.1, 0.2, 0.3]})
    manifest = registry.register(make_model("v1"), {}, {}, reference=reference)
    assert manifest.reference_sha256 is not None
    pd.testing.assert_frame_equal(registry.reference_sample("v1"), reference)
    register(registry, "v2")
    assert registry.reference_sample("v2") is None
    (registry.root / "v1" / "reference.parquet").write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="reference sample"):
        registry.reference_sample("v1")
    with pytest.raises(ValueError, match="lacks 1 of the model's features: b"):
        registry.register(make_model("v3"), {}, {}, reference=reference[["a"]])
    assert not (registry.root / "v3").exists()


def test_register_then_promote(registry: ModelRegistry, redis_client: redis.Redis) -> None:
    model = make_model("v1")
    manifest = registry.register(model, {"roc_auc": 0.81}, {"window": ["a", "b"]})
    directory = registry.root / "v1"
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "model.json"]
    stored = json.loads((directory / "manifest.json").read_text())
    assert stored["status"] == "candidate" and stored["sha256"] == manifest.sha256
    assert stored["feature_names"] == ["a", "b"] and stored["metrics"] == {"roc_auc": 0.81}
    assert stored["training"] == {"window": ["a", "b"]} and stored["kind"] == "linear"
    assert stored["created_at"].endswith("Z")
    assert registry.champion() is None and registry.load_champion() is None

    registry.promote("v1")
    pointer = registry.champion()
    assert pointer is not None
    assert (pointer.version, pointer.sha256, pointer.previous) == ("v1", manifest.sha256, None)
    raw = json.loads(redis_client.get(registry.keys.champion))  # type: ignore[arg-type]
    assert {"version", "sha256", "promoted_at", "previous"} <= set(raw)
    assert registry.load_champion() == model == registry.load("v1")
    assert [(m.version, m.status) for m in registry.list()] == [("v1", "champion")]
    assert json.loads((directory / "manifest.json").read_text())["status"] == "champion"
    x = np.array([[1.0, 2.0]])
    assert np.array_equal(registry.load("v1").score_many(x), model.score_many(x))


def test_champion_state_says_why_the_champion_cannot_be_loaded(registry: ModelRegistry) -> None:
    assert registry.champion_state() == ChampionState(None)
    register(registry, "v1")
    registry.promote("v1")
    healthy = registry.champion_state()
    assert healthy.model is not None and healthy.model.version == "v1" and healthy.problem is None

    (registry.root / "v1" / "model.json").unlink()  # the pointer outlives the artifact
    broken = registry.champion_state()
    assert broken.pointer is not None and broken.pointer.version == "v1"
    assert broken.model is None and broken.problem is not None
    assert broken.problem.startswith("champion v1 cannot be loaded (no artifact for model")
    assert "churnstream models promote" in broken.problem


def test_a_version_is_written_once_and_must_be_a_plain_name(registry: ModelRegistry) -> None:
    register(registry, "v1")
    with pytest.raises(RegistryError, match="already registered"):
        register(registry, "v1", weight=2.0)
    for bad in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(RegistryError, match="invalid model version"):
            register(registry, bad)


def test_a_tampered_artifact_is_refused(registry: ModelRegistry) -> None:
    register(registry, "v1")
    register(registry, "v2")
    registry.promote("v1")
    artifact = registry.artifact_path("v2")
    artifact.write_text(artifact.read_text().replace('"intercept": -1.0', '"intercept": 3.0'))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        registry.load("v2")
    with pytest.raises(ArtifactIntegrityError):
        registry.promote("v2")
    assert registry.champion().version == "v1"  # type: ignore[union-attr]

    registry.promote("v1")  # now tamper with the champion itself
    champion = registry.artifact_path("v1")
    champion.write_text(champion.read_text().replace('"a"', '"z"'))
    with pytest.raises(ArtifactIntegrityError):
        registry.load_champion()


def test_rollback_restores_the_previous_champion(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback()
    for version in ("v1", "v2", "v3"):
        register(registry, version)
    registry.promote("v1")
    with pytest.raises(RegistryError, match="no previous"):
        registry.rollback()
    registry.promote("v2")
    registry.promote("v3")
    pointer = registry.champion()
    assert pointer is not None and pointer.previous == "v2" and pointer.history == ("v2", "v1")

    assert registry.rollback() == "v2"
    pointer = registry.champion()
    assert pointer is not None and (pointer.version, pointer.previous) == ("v2", "v1")
    assert registry.load_champion() == make_model("v2")
    statuses = {m.version: m.status for m in registry.list()}
    assert statuses == {"v1": "retired", "v2": "champion", "v3": "retired"}

    assert registry.rollback() == "v1"
    with pytest.raises(RegistryError, match="no previous"):
        registry.rollback()
    assert registry.champion().version == "v1"  # type: ignore[union-attr]


def test_promoting_an_unknown_version_leaves_the_champion_unchanged(
    registry: ModelRegistry, redis_client: redis.Redis
) -> None:
    register(registry, "v1")
    registry.promote("v1")
    before = redis_client.get(registry.keys.champion)
    with pytest.raises(ModelNotFoundError):
        registry.promote("v404")
    with pytest.raises(ModelNotFoundError):
        registry.load("v404")
    assert redis_client.get(registry.keys.champion) == before


def test_a_crash_before_the_rename_never_shows_a_model(
    registry: ModelRegistry, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(registry, "v1")
    registry.promote("v1")
    before = redis_client.get(registry.keys.champion)

    # 1. what a killed process leaves: a complete temp dir that was never renamed
    leftover = registry.root / ".tmp-v2-deadbeef"
    leftover.mkdir()
    for name in ("model.json", "manifest.json"):
        (leftover / name).write_text((registry.root / "v1" / name).read_text())

    # 2. a failure at the rename itself: register cleans up and raises
    def failing_rename(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"):
        register(registry, "v3")
    monkeypatch.undo()

    assert [m.version for m in registry.list()] == ["v1"]
    assert sorted(p.name for p in registry.root.iterdir()) == [".tmp-v2-deadbeef", "v1"]
    for version in ("v2", "v3"):
        with pytest.raises(ModelNotFoundError):
            registry.promote(version)
    assert redis_client.get(registry.keys.champion) == before
    register(registry, "v3")  # the version is still free
    assert [m.version for m in registry.list()] == ["v1", "v3"]


def test_list_trusts_the_pointer_over_stale_manifests(
    registry: ModelRegistry, redis_client: redis.Redis
) -> None:
    register(registry, "v1")
    register(registry, "v2")
    registry.promote("v1")
    # a crash after the SET but before the manifests were updated
    pointer = ChampionPointer(
        version="v2",
        sha256=registry.manifest("v2").sha256,
        promoted_at="2026-01-01T00:00:00Z",
        previous="v1",
        history=("v1",),
    )
    redis_client.set(registry.keys.champion, pointer.to_json())
    assert registry.manifest("v1").status == "champion"  # stale on disk
    assert {m.version: m.status for m in registry.list()} == {"v1": "retired", "v2": "champion"}
    assert registry.load_champion() == make_model("v2")


def test_subscribers_hear_about_promotions(
    registry: ModelRegistry, redis_client: redis.Redis
) -> None:
    register(registry, "v1")
    register(registry, "v2")
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(registry.keys.model_events)
    try:
        confirmed = pubsub.get_message(timeout=2.0)  # drain the subscribe confirmation
        assert confirmed is None
        registry.promote("v1")
        registry.promote("v2")
        registry.rollback()
        heard = []
        deadline = time.monotonic() + 5.0
        while len(heard) < 3 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                heard.append(message["data"])
        assert heard == [b"v1", b"v2", b"v1"]
    finally:
        pubsub.close()


# --- churnstream train -----------------------------------------------------------------------


def train_app() -> typer.Typer:
    from churnstream.commands.train_command import train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("noop")(lambda: None)  # a second command keeps `train` a sub-command
    return app


def test_train_needs_exactly_one_data_source() -> None:
    for args in (["train"], ["train", "--bootstrap", "--data", "online-retail", "x.csv"]):
        result = CliRunner().invoke(train_app(), args)
        assert result.exit_code == 2
        assert "--bootstrap" in result.output and "--data" in result.output
    result = CliRunner().invoke(train_app(), ["train", "--data", "online-retail"])
    assert result.exit_code == 2 and "FILE" in result.output


@pytest.mark.usefixtures("cli_env")
def test_train_bootstrap_registers_and_promotes(
    registry_settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("CHURN_MODEL_DIR", str(registry_settings.model_dir))
    get_settings.cache_clear()
    args = ["train", "--bootstrap", "--customers", "300", "--days", "60", "--json"]
    result = CliRunner().invoke(train_app(), args)
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout.strip().splitlines()[-1])
    registry = ModelRegistry(registry_settings, redis_client)
    assert registry.champion().version == output["version"]  # type: ignore[union-attr]
    assert Path(output["artifact"]) == registry.artifact_path(output["version"]).resolve()
    assert output["metrics"]["roc_auc"] > 0.6 and output["promoted"] is True
    assert registry.load_champion().version == output["version"]  # type: ignore[union-attr]

    result = CliRunner().invoke(train_app(), [*args, "--no-promote", "--seed", "8"])
    assert result.exit_code == 0, result.output
    second = json.loads(result.stdout.strip().splitlines()[-1])
    assert registry.champion().version == output["version"]  # type: ignore[union-attr]
    assert {m.version: m.status for m in registry.list()} == {
        output["version"]: "champion",
        second["version"]: "candidate",
    }


def test_following_a_champion_that_needs_more_history_warns(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from prometheus_client import CollectorRegistry, Gauge

    from core.champion import ChampionFollower

    gauge = Gauge("test_model_info", "test", ["version"], registry=CollectorRegistry())
    long = replace(make_model("v-long"), metadata={"retention_days": registry.retention_days + 280})
    registry.register(long, {}, {})
    registry.promote("v-long")
    follower = ChampionFollower(registry, gauge)
    with caplog.at_level("WARNING", logger="core.champion"):
        assert follower.refresh()
    assert follower.model is not None and follower.model.version == "v-long"
    assert f"CHURN_RETENTION_DAYS={registry.retention_days + 280}" in caplog.text

    caplog.clear()
    register(registry, "v-short")
    registry.promote("v-short")
    with caplog.at_level("WARNING", logger="core.champion"):
        assert follower.refresh()
    assert "CHURN_RETENTION_DAYS" not in caplog.text
