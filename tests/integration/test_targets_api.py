"""``GET /customers/to-contact`` and the value in ``GET /customers/{id}/risk``, against a real
Redis filled by the worker's batch code: the list is every stored customer with a positive
expected gain, ranked by it, recomputed here from the stored hashes; budgets, limits and
campaign overrides hold; bad parameters get a 422 naming them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from core.keys import Keys
from core.registry import ModelRegistry
from core.risk import assess
from core.settings import Settings
from core.store import FeatureStore
from core.targeting import VALUE_INPUTS, Valuation, customer_values
from serving.main import create_app
from tests.integration.test_api import (
    api_settings,
    fill_store,
    messages,
    parse_iso,
    register_and_promote,
)
from tests.support import stored_score
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


@pytest.fixture
def customers(settings: Settings, redis_client: redis.Redis) -> list[str]:
    register_and_promote(ModelRegistry(settings, redis_client), recency_model("test-targets"))
    return fill_store(settings, redis_client, customers=80)


@pytest.fixture
def client(settings: Settings, customers: list[str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings, api_settings())) as client:
        yield client


def stored(client: redis.Redis, settings: Settings, ids: list[str]) -> dict[str, dict[str, Any]]:
    keys = Keys.of(settings)
    out = {}
    for cid in ids:
        score = stored_score(client, keys, cid)
        assert score is not None and score.value is not None, cid
        out[cid] = {"score": score.score, "value": score.value, "band": score.band}
    return out


def expected_ranking(
    rows: dict[str, dict[str, Any]], cost: float = 1.0, incentive: float = 10.0, save: float = 0.3
) -> list[tuple[str, float]]:
    gains = {c: r["score"] * save * (r["value"] - incentive) - cost for c, r in rows.items()}
    ranked = sorted(((c, g) for c, g in gains.items() if g > 0), key=lambda cg: -cg[1])
    return ranked


def test_the_list_is_every_positive_gain_ranked_by_gain(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    rows = stored(redis_client, settings, customers)
    assert all(r["value"] >= 0 for r in rows.values())
    expected = expected_ranking(rows)
    assert 3 <= len(expected) < len(customers), "the data must give a list to rank"
    answer = client.get("/customers/to-contact", params={"max_contacts": 1000})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scanned"] == len(customers)
    assert body["candidates"] == len(expected) == body["count"]
    assert [i["customer_id"] for i in body["items"]] == [c for c, _ in expected]
    gains = [i["gain"] for i in body["items"]]
    assert gains == sorted(gains, reverse=True) and min(gains) > 0
    actions = api_settings().retention_actions
    store = FeatureStore(redis_client, Keys.of(settings))
    model = ModelRegistry(settings, redis_client).load_champion()
    for item, (cid, gain) in zip(body["items"], expected, strict=True):
        row = rows[cid]
        assert item["gain"] == pytest.approx(gain, abs=0.006)
        assert item["score"] == row["score"] and item["value"] == row["value"]
        assert item["expected_loss"] == pytest.approx(row["score"] * row["value"], abs=0.006)
        assert item["band"] == row["band"] and item["action"] == actions[row["band"]]
        assert 1 <= len(item["reasons"]) <= 3
        live = assess(store, model, cid, time.time())
        assert live is not None
        for reason in item["reasons"]:
            assert reason["feature"] in model.feature_names
            assert reason["value"] == pytest.approx(live.features[reason["feature"]], abs=1.0)
    assert body["total_gain"] == pytest.approx(sum(gains), abs=0.05)


def test_budget_and_max_contacts_cut_the_ranking(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    full = client.get("/customers/to-contact", params={"max_contacts": 1000}).json()["items"]
    spends = [i["expected_spend"] for i in full]
    budget = sum(spends[:3]) + 0.02  # the first three fit (spends are rounded to cents)
    cut = client.get("/customers/to-contact", params={"budget": budget}).json()
    assert [i["customer_id"] for i in cut["items"]] == [i["customer_id"] for i in full[:3]]
    assert cut["budget"] == budget and cut["total_spend"] <= budget
    two = client.get("/customers/to-contact", params={"max_contacts": 2}).json()
    assert [i["customer_id"] for i in two["items"]] == [i["customer_id"] for i in full[:2]]


def test_campaign_overrides_change_the_list(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    rows = stored(redis_client, settings, customers)
    params: dict[str, Any] = {"max_contacts": 1000, "contact_cost": 5, "incentive": 0,
                              "save_rate": 0.6}  # fmt: skip
    body = client.get("/customers/to-contact", params=params).json()
    assert body["campaign"] == {"contact_cost": 5.0, "incentive": 0.0, "save_rate": 0.6}
    expected = expected_ranking(rows, cost=5.0, incentive=0.0, save=0.6)
    assert [i["customer_id"] for i in body["items"]] == [c for c, _ in expected]
    assert expected != expected_ranking(rows)
    nobody = client.get("/customers/to-contact", params={"save_rate": 0}).json()
    assert nobody["items"] == [] and nobody["candidates"] == 0


@pytest.mark.parametrize(
    ("params", "place"),
    [
        ({"budget": -5}, "query.budget"),
        ({"budget": 0}, "query.budget"),
        ({"budget": "lots"}, "query.budget"),
        ({"budget": "nan"}, "query.budget"),
        ({"max_contacts": 0}, "query.max_contacts"),
        ({"save_rate": 1.5}, "query.save_rate"),
        ({"contact_cost": -1}, "query.contact_cost"),
        ({"incentive": "inf"}, "query.incentive"),
    ],
)
def test_bad_parameters_get_a_422_naming_them(
    client: TestClient, params: dict[str, Any], place: str
) -> None:
    answer = client.get("/customers/to-contact", params=params)
    assert all(message.startswith(place + ":") for message in messages(answer)), answer.text


def test_the_risk_answer_carries_value_and_expected_loss(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    store = FeatureStore(redis_client, Keys.of(settings))
    model = ModelRegistry(settings, redis_client).load_champion()
    valuation = Valuation.from_settings(settings, model.metadata)
    paid_seen = False
    for cid in customers[:20]:
        body = client.get(f"/customers/{cid}/risk").json()
        live = assess(store, model, cid, parse_iso(body["evaluated_at"]))
        assert live is not None
        row = np.array([[live.features[n] for n in VALUE_INPUTS]])
        assert body["value"] == customer_values(row, VALUE_INPUTS, valuation)[0]
        assert body["expected_loss"] == round(body["score"] * body["value"], 2)
        paid_seen |= live.features["is_paid"] == 1.0
        if live.features["is_paid"] == 1.0:
            assert body["value"] >= 200.0
    assert paid_seen
