"""``churnstream targets`` against a real Redis filled by the worker's code: the JSON is the
API's answer, the CSV has one ranked row per contact, the table names every contact, and
bad options are refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from churnstream.cli import app
from core.keys import Keys
from core.registry import ModelRegistry
from core.settings import Settings
from tests.integration.test_api import fill_store, register_and_promote
from tests.support import stored_score
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


@pytest.fixture
def customers(settings: Settings, redis_client: redis.Redis, cli_env: None) -> list[str]:
    register_and_promote(ModelRegistry(settings, redis_client), recency_model("test-targets"))
    return fill_store(settings, redis_client, customers=80)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_json_csv_and_table_list_the_same_ranking(
    customers: list[str], settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys.of(settings)
    result = run("targets", "--json", "--max-contacts", "1000")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    items = document["items"]
    assert len(items) >= 3 and document["scanned"] == len(customers)
    # the ranking is by gain, positive only, and each gain follows from the stored hash
    assert [i["gain"] for i in items] == sorted((i["gain"] for i in items), reverse=True)
    for item in items:
        stored = stored_score(redis_client, keys, item["customer_id"])
        assert stored is not None and stored.value is not None
        gain = stored.score * 0.3 * (stored.value - 10.0) - 1.0
        assert gain > 0 and item["gain"] == pytest.approx(gain, abs=0.006)

    path = tmp_path / "out" / "contacts.csv"
    result = run("targets", "--max-contacts", "5", "--csv", str(path))
    assert result.exit_code == 0, result.output
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["customer_id"] for r in rows] == [i["customer_id"] for i in items[:5]]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["reasons"] and r["action"] for r in rows)
    for row in rows:  # the table shows every contact
        assert row["customer_id"] in result.stdout
    assert "customers with a positive expected gain" in result.stdout

    budget = sum(i["expected_spend"] for i in items[:2]) + 0.02
    result = run("targets", "--json", "--budget", str(budget), "--incentive", "10")
    cut = json.loads(result.stdout)["items"]
    assert [i["customer_id"] for i in cut] == [i["customer_id"] for i in items[:2]]


def test_bad_options_are_refused(customers: list[str]) -> None:
    for args, name in ((["--budget", "-3"], "--budget"), (["--save-rate", "2"], "--save-rate"),
                       (["--max-contacts", "0"], "--max-contacts")):  # fmt: skip
        result = run("targets", *args)
        assert result.exit_code == 2
        assert name in result.output


def test_without_a_champion_it_says_so(settings: Settings, cli_env: None) -> None:
    result = run("targets")
    assert result.exit_code == 1
    assert "no champion model" in result.output
