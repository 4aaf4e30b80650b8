"""`churnstream train --data online-retail` and `churnstream models ...` against a real Redis:
the model card beside the artifact, the promotion gate at training time and at `promote`,
`--force`, rollback, list and show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from churnstream.cli import app
from core.registry import ModelRegistry
from core.settings import Settings, get_settings
from tests.support_data import write_online_retail_csv

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


@pytest.fixture
def env(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_env: None
) -> Settings:
    local = settings.model_copy(update={"model_dir": tmp_path / "models", "retention_days": 400})
    monkeypatch.setenv("CHURN_MODEL_DIR", str(local.model_dir))
    monkeypatch.setenv("CHURN_RETENTION_DAYS", "400")
    get_settings.cache_clear()
    return local


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_online_retail_csv(tmp_path_factory.mktemp("shop") / "shop.csv")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.output


def train_json(*args: str) -> dict:
    code, stdout, output = invoke("train", *args, "--json")
    assert code == 0, output
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_gate_promote_force_rollback(
    env: Settings, redis_client: redis.Redis, shop_csv: Path
) -> None:
    registry = ModelRegistry(env, redis_client)
    first = train_json("--data", "online-retail", str(shop_csv), "--horizon-days", "60")
    assert first["promoted"] and first["gate"]["passed"] and first["gate"]["champion"] is None
    card = Path(first["model_card"]).read_text()
    assert card.startswith(f"# Model card: {first['version']}")
    assert "no purchase within 60 days" in card and "RFM baseline" in card
    assert "2021-11-01" in card and "| ROC AUC (all validation rows) |" in card
    metrics = first["metrics"]
    assert metrics["baseline"]["roc_auc"] > 0.5 and "confusion" in metrics
    assert first["training"]["data_sha256"] and first["training"]["retention_days"] == 400
    assert registry.champion().version == first["version"]  # type: ignore[union-attr]

    # The same data and recipe again: an equal model is not better, so it stays a candidate.
    second = train_json("--data", "online-retail", str(shop_csv), "--horizon-days", "60")
    assert not second["promoted"] and not second["gate"]["passed"]
    assert second["gate"]["champion"] == first["version"]
    assert second["gate"]["champion_roc_auc"] == pytest.approx(second["gate"]["candidate_roc_auc"])
    assert registry.champion().version == first["version"]  # type: ignore[union-attr]

    code, _, output = invoke("models", "promote", second["version"])
    assert code == 1 and "refused" in output and first["version"] in output
    assert registry.champion().version == first["version"]  # type: ignore[union-attr]

    code, stdout, output = invoke("models", "promote", second["version"], "--force")
    assert code == 0, output
    assert "forced" in stdout and registry.champion().version == second["version"]  # type: ignore[union-attr]

    code, stdout, output = invoke("models", "rollback")
    assert code == 0, output
    assert registry.champion().version == first["version"]  # type: ignore[union-attr]

    code, stdout, _ = invoke("models", "list", "--json")
    statuses = {m["version"]: m["status"] for m in json.loads(stdout)}
    assert statuses == {first["version"]: "champion", second["version"]: "retired"}

    code, stdout, _ = invoke("models", "show", "--json")
    shown = json.loads(stdout)
    assert shown["version"] == first["version"] and shown["status"] == "champion"
    assert Path(shown["model_card"]).is_file() and shown["metrics"]["gate"]["passed"]

    code, stdout, _ = invoke("models", "show", second["version"])
    assert code == 0 and "refused" in stdout and "model card" in stdout
    code, _, output = invoke("models", "show", "v-nope")
    assert code == 1 and "v-nope" in output


def test_a_champion_whose_artifact_is_gone_blocks_no_promotion(
    env: Settings, redis_client: redis.Redis, shop_csv: Path
) -> None:
    registry = ModelRegistry(env, redis_client)
    first = train_json("--data", "online-retail", str(shop_csv), "--horizon-days", "60")
    shutil.rmtree(registry.path_of(first["version"]))  # the Redis pointer outlives it

    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert f"champion {first['version']} cannot be loaded" in result.output
    assert "no artifact" in result.output and "models promote" in result.output

    second = train_json("--data", "online-retail", str(shop_csv), "--horizon-days", "60")
    gate = second["gate"]
    assert second["promoted"] and gate["passed"] and gate["champion"] is None
    assert gate["unloadable_champion"] == first["version"]
    assert "counts as no champion" in gate["reason"] and "no artifact" in gate["reason"]
    assert registry.champion().version == second["version"]  # type: ignore[union-attr]
    shown = json.loads(invoke("models", "show", "--json")[1])
    assert shown["metrics"]["gate"]["unloadable_champion"] == first["version"]

    # A manual promotion is not blocked either: the broken champion counts as none.
    third = train_json(
        "--data", "online-retail", str(shop_csv), "--horizon-days", "60", "--no-promote"
    )
    shutil.rmtree(registry.path_of(second["version"]))
    code, stdout, output = invoke("models", "promote", third["version"])
    assert code == 0, output
    assert "forced" not in stdout and "counts as no champion" in stdout
    assert registry.champion().version == third["version"]  # type: ignore[union-attr]
    assert "cannot be loaded" not in CliRunner().invoke(app, ["models", "list"]).output


def test_a_better_model_passes_the_gate_against_another_kind_of_champion(
    env: Settings, redis_client: redis.Redis, shop_csv: Path
) -> None:
    registry = ModelRegistry(env, redis_client)
    starter = train_json("--bootstrap", "--customers", "300", "--days", "60")
    assert starter["promoted"]
    # The simulator's activity model, scored on the shop's validation rows, ranks poorly.
    retail = train_json("--data", "online-retail", str(shop_csv), "--horizon-days", "60")
    gate = retail["gate"]
    assert gate["champion"] == starter["version"] and gate["passed"] and retail["promoted"]
    assert gate["candidate_roc_auc"] > gate["champion_roc_auc"]
    assert registry.champion().version == retail["version"]  # type: ignore[union-attr]
    # Promoting the starter again needs --force: it was never compared with this champion.
    code, _, output = invoke("models", "promote", starter["version"])
    assert code == 1 and "never compared" in output


def test_train_refuses_unusable_data(env: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "orders.csv"
    bad.write_text("order,sku\n1,A\n")
    code, _, output = invoke("train", "--data", "online-retail", str(bad))
    assert code == 2 and "orders.csv" in output and "InvoiceNo" in output
    code, _, output = invoke("train", "--data", "sales-db", str(bad))
    assert code == 2 and "unknown data source" in output


def test_the_online_challenger_learns_matured_cutoffs_in_shadow_once(
    env: Settings, redis_client: redis.Redis
) -> None:
    from datetime import UTC, datetime

    from core.archive import ArchivedEvent, EventArchive
    from offline.simulator import SimulationConfig, simulate
    from tests.support_models import recency_model

    code, _, output = invoke("models", "challenger")
    assert code == 1 and "needs a champion" in output
    registry = ModelRegistry(env, redis_client)
    champion = recency_model("challenged")
    registry.register(champion, {}, {"label": "cancellation_or_inactivity", "horizon_days": 14})
    registry.promote(champion.version)
    config = SimulationConfig(
        customers=300, days=90, seed=4, start=datetime(2026, 1, 5, tzinfo=UTC)
    )
    events = list(simulate(config))
    EventArchive(env.archive_dir).write([ArchivedEvent.of(e, "sim") for e in events])

    code, stdout, output = invoke("models", "challenger", "--json")
    assert code == 0, output
    first = json.loads(stdout)
    assert first["learned_now"] == first["cutoffs_learned"] >= 6
    assert first["rows_learned"] == sum(row["rows"] for row in first["history"])
    assert 0.5 < first["champion_roc_auc"] < 1 and 0.5 < first["challenger_roc_auc"] < 1
    assert first["history"][0]["challenger_auc"] == 0.5  # scored before learning anything

    code, stdout, output = invoke("models", "challenger", "--json", "--register")
    assert code == 0, output
    again = json.loads(stdout)
    assert again["learned_now"] == 0 and again["rows_learned"] == first["rows_learned"]
    candidate = registry.manifest(again["registered"])
    assert candidate.status == "candidate" and registry.champion().version == "challenged"
    assert candidate.training["source"] == "online challenger"
