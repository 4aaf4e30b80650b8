"""The HTTP API against a real Redis filled by the real worker code, with real registered
models: answers agree with :func:`core.risk.assess` and the stored scores; admin routes
need a key; validation errors name the place; and a schema-driven fuzz finds no 5xx."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from churnstream.infra.processes import stop_process
from core.events import (
    Error,
    ErrorPayload,
    PageView,
    PageViewPayload,
    SessionStart,
    SessionStartPayload,
)
from core.keys import Keys
from core.model import BandCutoffs, LinearModel
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.risk import assess
from core.settings import Settings
from core.store import FeatureStore
from offline.simulator import SimulationConfig, simulate
from serving.config import ApiSettings
from serving.main import create_app
from serving.openapi import with_champion_features
from stream.batch import BatchProcessor
from tests.support import child_env, every_shard, free_ports, isolated_settings, stored_score
from tests.support_batch import as_messages, feed
from tests.support_models import engagement_model, recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

ADMIN_KEY = "test-admin-key-" + uuid.uuid4().hex
FIRST, SECOND = "test-recency-1", "test-recency-2"


# --- state: a registry with a champion, and customers applied by the worker's code --------


def register_and_promote(registry: ModelRegistry, model: LinearModel) -> None:
    registry.register(model, {"roc_auc": 0.8}, {"source": "test"})
    registry.promote(model.version)


def fill_store(settings: Settings, client: redis.Redis, customers: int = 40) -> list[str]:
    """Simulate the last 21 days up to today (UTC) and apply them with the worker's batch
    code, scoring with the registry's champion; return the customers' ids."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        customers=customers, days=21, seed=11, start=today - timedelta(days=21)
    )
    events = list(simulate(config))
    model = ModelRegistry(settings, client).load_champion()
    store = FeatureStore(client, Keys.of(settings))
    with EventProducer(settings) as producer:
        worker = BatchProcessor(settings, store, producer, lambda: model)
        feed(worker, events, 1000)
    return sorted({event.customer_id for event in events})


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "api_keys": SecretStr(ADMIN_KEY),
        "read_keys_required": False,
    }
    values.update(overrides)
    return ApiSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis) -> ModelRegistry:
    registry = ModelRegistry(settings, redis_client)
    register_and_promote(registry, recency_model(FIRST))
    return registry


@pytest.fixture
def customers(settings: Settings, redis_client: redis.Redis, registry: ModelRegistry) -> list[str]:
    return fill_store(settings, redis_client)


@pytest.fixture
def reports_dir(settings: Settings) -> Path:
    return settings.reports_dir


@pytest.fixture
def client(settings: Settings, customers: list[str], reports_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings, api_settings())) as client:
        yield client


def stored_bands(client: redis.Redis, settings: Settings, ids: list[str]) -> dict[str, str]:
    keys = Keys.of(settings)
    return {cid: stored_score(client, keys, cid).band for cid in ids}  # type: ignore[union-attr]


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def messages(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["msg"] for error in response.json()["detail"]]


# --- customers -----------------------------------------------------------------------------


def test_risk_matches_assess_at_the_same_time(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    registry: ModelRegistry,
    customers: list[str],
) -> None:
    store = FeatureStore(redis_client, Keys.of(settings))
    model = registry.load_champion()
    actions = api_settings().retention_actions
    for customer_id in customers[:10]:
        response = client.get(f"/customers/{customer_id}/risk")
        assert response.status_code == 200, response.text
        body = response.json()
        # Features use whole seconds of the evaluation time, which evaluated_at keeps.
        evaluated_at = parse_iso(body["evaluated_at"])
        assert abs(evaluated_at - time.time()) < 60
        expected = assess(store, model, customer_id, evaluated_at)
        assert expected is not None
        assert body["customer_id"] == customer_id
        assert body["model_version"] == FIRST
        assert body["score"] == expected.score
        assert body["band"] == expected.band
        assert body["action"] == actions[body["band"]]
        assert body["features"] == expected.features
        assert [(e["feature"], e["contribution"]) for e in body["explanations"]] == (
            expected.top_contributions
        )
        for explanation in body["explanations"]:
            assert explanation["value"] == expected.features[explanation["feature"]]
        assert len(body["explanations"]) <= 5
        assert parse_iso(body["last_event_time"]) == expected.last_event_time
        stored = expected.stored_score
        assert stored is not None
        assert body["stored_score"]["score"] == stored.score
        assert body["stored_score"]["band"] == stored.band
        assert body["stored_score"]["model_version"] == FIRST
        assert abs(parse_iso(body["stored_score"]["scored_at"]) - stored.scored_at) < 0.001


def test_a_hand_built_customer_scores_as_computed_by_hand(
    client: TestClient, settings: Settings, redis_client: redis.Redis, registry: ModelRegistry
) -> None:
    """Two sessions, five activity events of which two errors, the last exactly two days
    before the test starts. With recency_model (intercept -1; days since last activity
    0.35, sessions in 7 days -0.4, error rate over 30 days 2.0; mean 0, scale 1) the log-odds
    at time t are -1 + 0.35 d - 0.4 * 2 + 2.0 * 2/5, d = (t - last) / 86400 days."""
    last = int(time.time()) - 2 * 86_400
    at = lambda seconds: datetime.fromtimestamp(seconds, UTC)  # noqa: E731
    cid = "hand-built-1"
    events = [
        SessionStart(event_id="h1", customer_id=cid, event_time=at(last - 86_400),
                     payload=SessionStartPayload(session_id="s1")),
        PageView(event_id="h2", customer_id=cid, event_time=at(last - 86_400 + 60),
                 payload=PageViewPayload(page="home")),
        Error(event_id="h3", customer_id=cid, event_time=at(last - 86_400 + 120),
              payload=ErrorPayload(code=500)),
        Error(event_id="h4", customer_id=cid, event_time=at(last - 60), payload=ErrorPayload()),
        SessionStart(event_id="h5", customer_id=cid, event_time=at(last),
                     payload=SessionStartPayload(session_id="s2")),
    ]  # fmt: skip
    model = registry.load_champion()
    store = FeatureStore(redis_client, Keys.of(settings))
    with EventProducer(settings) as producer:
        worker = BatchProcessor(settings, store, producer, lambda: model)
        # offsets past those the customers fixture used on every partition
        offsets = {(t, p): 1_000_000 for t in (worker.topics.activity, worker.topics.transactions)
                   for p in range(settings.topic_partitions)}  # fmt: skip
        assert worker.process(as_messages(worker.topics, events, offsets)).applied == 5

    body = client.get(f"/customers/{cid}/risk").json()
    d = (math.floor(parse_iso(body["evaluated_at"])) - last) / 86_400  # features: whole seconds
    assert 2.0 <= d < 2.01
    log_odds = -1.0 + 0.35 * d - 0.4 * 2 + 2.0 * 0.4
    score = 1.0 / (1.0 + math.exp(-log_odds))
    assert 0.42 < score < 0.43  # -0.3 + 0.35 (d - 2): between the cut-offs 0.4 and 0.7
    assert body["score"] == pytest.approx(score, abs=1e-6)
    assert body["band"] == "medium"
    features = body["features"]
    assert features["sessions_7d"] == 2 and features["error_rate_30d"] == 0.4
    assert features["days_since_last_activity"] == pytest.approx(d, abs=1e-9)
    contributions = dict((e["feature"], e["contribution"]) for e in body["explanations"])
    assert contributions == pytest.approx(
        {"sessions_7d": -0.8, "error_rate_30d": 0.8, "days_since_last_activity": 0.35 * d}
    )


def test_the_fast_path_answers_as_the_fastapi_route_does(
    settings: Settings,
    customers: list[str],
    reports_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The risk lookup's plain case is answered before FastAPI (serving.fast_path) with
    the same bytes as FastAPI's own route; the other cases go through FastAPI."""
    frozen = settings.model_copy(update={"as_of": datetime.now(UTC)})  # one evaluation time
    app = create_app(frozen, api_settings())

    async def through_fastapi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    too_long = "c" * 129
    paths = [f"/customers/{cid}/risk" for cid in customers[:8]]
    paths += ["/customers/nobody-here/risk", f"/customers/{too_long}/risk"]
    with TestClient(app) as fast, TestClient(through_fastapi) as slow:
        answers = [(fast.get(path), slow.get(path)) for path in paths]
        # the plain case never reaches FastAPI; an id FastAPI must refuse does
        calls: list[str] = []
        original = FastAPI.__call__

        async def counting(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
            calls.append(scope["path"])
            await original(self, scope, receive, send)

        monkeypatch.setattr(FastAPI, "__call__", counting)
        assert fast.get(paths[0]).status_code == 200
        assert fast.get(paths[-1]).status_code == 422
        assert calls == [paths[-1]]
    for (a, b), path in zip(answers, paths, strict=True):
        assert (a.status_code, a.headers["content-type"]) == (
            b.status_code,
            b.headers["content-type"],
        )
        assert a.content == b.content, path
    assert [a.status_code for a, _ in answers] == [200] * 8 + [404, 422]
    assert "too_long" in answers[-1][0].text or "at most 128" in answers[-1][0].text


def test_unknown_customer_is_404(client: TestClient) -> None:
    response = client.get("/customers/nobody-here/risk")
    assert response.status_code == 404
    assert response.json() == {"detail": "customer 'nobody-here' is unknown: no events seen"}


def test_at_risk_lists_the_risk_index_in_order_and_pages(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    everyone = client.get("/customers/at-risk", params={"limit": 1000}).json()
    assert everyone["total"] == len(customers) == len(everyone["items"])
    scores = [item["score"] for item in everyone["items"]]
    assert scores == sorted(scores, reverse=True)
    ranked = every_shard(redis_client, Keys.of(settings), "risk")
    assert [item["customer_id"] for item in everyone["items"]] == [m.decode() for m, _ in ranked]
    bands = stored_bands(redis_client, settings, customers)
    for item in everyone["items"]:
        assert item["band"] == bands[item["customer_id"]]
        assert item["model_version"] == FIRST
        assert parse_iso(item["scored_at"]) <= time.time()
        assert parse_iso(item["last_event_time"]) <= time.time() + 86400

    paged = []
    for offset in range(0, len(customers) + 7, 7):
        page = client.get("/customers/at-risk", params={"limit": 7, "offset": offset}).json()
        assert page["total"] == len(customers)
        paged.extend(page["items"])
    assert paged == everyone["items"]


def test_at_risk_band_filter_uses_stored_bands(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    bands = stored_bands(redis_client, settings, customers)
    assert len(set(bands.values())) >= 2, f"the simulation should give several bands: {bands}"
    everyone = client.get("/customers/at-risk", params={"limit": 1000}).json()["items"]
    for band in ("high", "medium", "low"):
        expected = [item for item in everyone if item["band"] == band]
        got = client.get("/customers/at-risk", params={"band": band, "limit": 1000}).json()
        assert got["total"] == sum(1 for b in bands.values() if b == band)
        assert got["items"] == expected
        paged = []
        for offset in range(0, len(expected) + 3, 3):
            page = client.get(
                "/customers/at-risk", params={"band": band, "limit": 3, "offset": offset}
            ).json()
            assert page["total"] == len(expected)
            paged.extend(page["items"])
        assert paged == expected


@pytest.mark.parametrize(
    ("params", "place"),
    [
        ({"band": "severe"}, "query.band"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"offset": -1}, "query.offset"),
    ],
)
def test_at_risk_rejects_bad_parameters(
    client: TestClient, params: dict[str, Any], place: str
) -> None:
    [message] = messages(client.get("/customers/at-risk", params=params))
    assert message.startswith(f"{place}: ")


def test_distribution_sums_to_the_customer_count(
    client: TestClient, settings: Settings, redis_client: redis.Redis, customers: list[str]
) -> None:
    body = client.get("/stats/risk-distribution").json()
    assert body["bins"] == [round(i / 10, 1) for i in range(11)]
    assert len(body["counts"]) == 10
    assert sum(body["counts"]) == body["customers"] == len(customers)
    assert sum(body["bands"].values()) == len(customers)
    assert body["band_cutoffs"] == {"medium": 0.4, "high": 0.7}
    scores = [s for _, s in every_shard(redis_client, Keys.of(settings), "risk")]
    assert body["counts"] == [sum(1 for s in scores if lo <= s < lo + 0.1 or (i == 9 and s == 1.0)) for i, lo in enumerate(body["bins"][:-1])]  # fmt: skip
    assert body["bands"]["high"] == sum(1 for s in scores if s >= 0.7)
    assert body["bands"]["low"] == sum(1 for s in scores if s < 0.4)


def test_lists_name_the_scoring_time_the_clock_or_churn_as_of(
    client: TestClient, settings: Settings, customers: list[str], reports_dir: Path
) -> None:
    before = time.time()
    body = client.get("/stats/risk-distribution").json()
    page = client.get("/customers/at-risk", params={"limit": 1}).json()
    for answer in (body, page):
        assert answer["as_of"] is None
        assert before - 1 <= parse_iso(answer["scoring_time"]) <= time.time() + 1
    fixed = settings.model_copy(update={"as_of": datetime(2011, 12, 10, tzinfo=UTC)})
    with TestClient(create_app(fixed, api_settings())) as frozen:
        body = frozen.get("/stats/risk-distribution").json()
        page = frozen.get("/customers/at-risk", params={"limit": 1}).json()
    assert body["as_of"] == body["scoring_time"] == "2011-12-10T00:00:00.000Z"
    assert page["as_of"] == page["scoring_time"] == "2011-12-10T00:00:00.000Z"


# --- scoring -------------------------------------------------------------------------------


def features_of(client: TestClient, customer_id: str) -> dict[str, float]:
    return client.get(f"/customers/{customer_id}/risk").json()["features"]


def test_score_one_row_like_the_risk_route(client: TestClient, customers: list[str]) -> None:
    risk = client.get(f"/customers/{customers[0]}/risk").json()
    response = client.post("/score", json={"features": risk["features"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["score"] == risk["score"]
    assert body["band"] == risk["band"]
    assert body["model_version"] == FIRST
    assert body["explanations"] == risk["explanations"]
    assert body["action"] == risk["action"]


def test_score_rejections_name_the_field(client: TestClient, customers: list[str]) -> None:
    features = features_of(client, customers[0])
    missing = {k: v for k, v in features.items() if k != "sessions_7d"}
    assert messages(client.post("/score", json={"features": missing})) == [
        "features: missing 'sessions_7d'"
    ]
    [message] = messages(client.post("/score", json={"features": {**features, "bogus": 1}}))
    assert message.startswith("features: unknown 'bogus'")
    [message] = messages(
        client.post("/score", json={"features": {**features, "sessions_7d": "many"}})
    )
    assert message.startswith("features.sessions_7d: Input should be a valid number")
    raw = json.dumps({"features": {**missing, "sessions_7d": 12345}}).replace("12345", "NaN")
    [message] = messages(
        client.post("/score", content=raw, headers={"content-type": "application/json"})
    )
    assert message == "body: JSON decode error"  # NaN is not JSON
    assert messages(client.post("/score", json={}))[0] == "features: Field required"
    assert messages(client.post("/score", content=b"{", headers={"content-type": "application/json"}))[0].startswith("body: ")  # fmt: skip


def test_score_batch_is_vectorised_and_ordered(
    client: TestClient, registry: ModelRegistry, customers: list[str]
) -> None:
    rows = [{"customer_id": cid, "features": features_of(client, cid)} for cid in customers[:8]]
    rows.append({"features": rows[0]["features"]})  # customer_id is optional
    response = client.post("/score/batch", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    model = registry.load_champion()
    assert model is not None
    assert body["model_version"] == FIRST and body["count"] == len(rows)
    for index, (row, item) in enumerate(zip(rows, body["items"], strict=True)):
        assert item["index"] == index
        assert item["customer_id"] == row.get("customer_id")
        assert math.isclose(item["score"], model.score_one(row["features"]), rel_tol=1e-12)
        assert item["band"] == model.band_of(item["score"])


def test_score_batch_rejections_name_row_and_field(
    client: TestClient, customers: list[str]
) -> None:
    features = features_of(client, customers[0])
    rows: list[dict[str, Any]] = [{"features": dict(features)} for _ in range(5)]
    del rows[3]["features"]["sessions_7d"]
    rows[1]["features"]["bogus"] = 2.0
    got = messages(client.post("/score/batch", json={"rows": rows}))
    assert got[0].startswith("rows[1].features: unknown 'bogus'")
    assert got[1] == "rows[3].features: missing 'sessions_7d'"
    assert len(got) == 2

    rows = [{"features": dict(features)} for _ in range(3)]
    rows[2]["features"]["sessions_7d"] = "x"
    [message] = messages(client.post("/score/batch", json={"rows": rows}))
    assert message.startswith("rows[2].features.sessions_7d: Input should be a valid number")

    rows = [{"customer_id": "c", "features": features, "colour": "red"}]
    [message] = messages(client.post("/score/batch", json={"rows": rows}))
    assert message.startswith("rows[0].colour: Extra inputs are not permitted")

    [message] = messages(
        client.post("/score/batch", json={"rows": [{"features": features}] * 10_001})
    )
    assert message.startswith("rows: List should have at most 10000 items")
    assert len(message) < 200  # the 10,001 rows are not echoed back
    [message] = messages(client.post("/score/batch", json={"rows": []}))
    assert message.startswith("rows: List should have at least 1 item")


def test_score_batch_of_10000_rows(client: TestClient, customers: list[str]) -> None:
    features = features_of(client, customers[0])
    started = time.perf_counter()
    response = client.post("/score/batch", json={"rows": [{"features": features}] * 10_000})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 10_000
    assert elapsed < 10, f"10,000 rows took {elapsed:.1f} s"


# --- models, probes, metrics -----------------------------------------------------------------


def test_models_routes(client: TestClient, settings: Settings, redis_client: redis.Redis) -> None:
    body = client.get("/models").json()
    assert body["champion"] == FIRST
    assert [(m["version"], m["status"]) for m in body["models"]] == [(FIRST, "champion")]
    assert body["decisions"] == []
    current = client.get("/models/current").json()
    assert current["version"] == FIRST and current["status"] == "champion"
    assert len(current["sha256"]) == 64 and "sessions_7d" in current["feature_names"]

    decision = {"decided_at": "2026-03-01T00:00:00Z", "decision": "retrain", "reason": "drift"}
    redis_client.lpush(f"{settings.redis_key_prefix}:decisions", b"not json", json.dumps(decision))
    assert client.get("/models").json()["decisions"] == [decision]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": FIRST, "reasons": []}


def test_without_a_champion_scoring_is_503_and_not_ready(
    settings: Settings, redis_client: redis.Redis, reports_dir: Path
) -> None:
    empty = settings.model_copy(update={"redis_key_prefix": f"{settings.redis_key_prefix}-empty"})
    with TestClient(create_app(empty, api_settings())) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["no champion model is loaded"]
        assert client.get("/health").status_code == 200
        for response in (
            client.get("/customers/C1/risk"),
            client.post("/score", json={"features": {}}),
            client.post("/score/batch", json={"rows": [{"features": {}}]}),
        ):
            assert response.status_code == 503
            assert "no champion model is loaded" in response.json()["detail"]
        assert client.get("/models/current").status_code == 404
        assert client.get("/models").json() == {"champion": None, "models": [], "decisions": []}
        assert client.get("/stats/risk-distribution").json()["bands"] is None


def test_a_champion_whose_artifact_is_gone_is_named_by_ready(
    settings: Settings, redis_client: redis.Redis, reports_dir: Path
) -> None:
    registry = ModelRegistry(settings, redis_client)
    register_and_promote(registry, recency_model("gone-1"))
    shutil.rmtree(registry.path_of("gone-1"))  # the Redis pointer outlives the directory
    with TestClient(create_app(settings, api_settings())) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        (reason,) = ready.json()["reasons"]
        assert reason.startswith("no champion model is loaded: champion gone-1 cannot be loaded")
        assert "no artifact" in reason and "churnstream models promote" in reason
        scored = client.post("/score", json={"features": {}})
        assert scored.status_code == 503 and "gone-1 cannot be loaded" in scored.json()["detail"]


def test_ready_is_503_when_redis_does_not_answer(settings: Settings, reports_dir: Path) -> None:
    nowhere = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_ports(1)[0]}/0"})
    with TestClient(create_app(nowhere, api_settings())) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"][0] == "redis does not answer: ConnectionError"


def test_metrics_count_requests_by_route_template(client: TestClient, customers: list[str]) -> None:
    for customer_id in customers[:3]:
        client.get(f"/customers/{customer_id}/risk")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert (
        'churn_api_requests_total{method="GET",route="/customers/{customer_id}/risk",status="200"}'
        in text
    )
    assert 'route="unmatched"' in text
    assert (
        'churn_api_request_duration_seconds_bucket{le="0.005",route="/customers/{customer_id}/risk"}'
        in text
    )
    assert "churn_api_scores_total{band=" in text
    assert f'churn_api_model_info{{version="{FIRST}"}} 1.0' in text
    for customer_id in customers:  # no per-customer label values
        assert customer_id not in text


@pytest.mark.parametrize(
    ("mode", "logged"), [("errors", {404, 403}), ("all", {200, 404, 403}), ("off", set())]
)
def test_access_log_lines_follow_the_setting(
    settings: Settings,
    customers: list[str],
    reports_dir: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    logged: set[int],
) -> None:
    app = create_app(settings, api_settings(access_log=mode))
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="serving.access"):
        assert client.get(f"/customers/{customers[0]}/risk").status_code == 200  # fast path
        assert client.get("/models").status_code == 200  # through FastAPI
        assert client.get("/customers/nobody-here/risk").status_code == 404
        wrong = {"X-API-Key": "not-the-key-" + uuid.uuid4().hex}
        assert client.post("/admin/retrain", headers=wrong).status_code == 403
    lines = [r for r in caplog.records if r.name == "serving.access"]
    statuses = {int(r.getMessage().rsplit(" ", 1)[1]) for r in lines}
    assert statuses == logged
    for record in lines:
        assert record.__dict__["duration_ms"] >= 0 and record.__dict__["client"]
        assert wrong["X-API-Key"] not in record.getMessage()
    if mode == "all":
        assert f"GET /customers/{customers[0]}/risk 200" in [r.getMessage() for r in lines]


# --- admin -----------------------------------------------------------------------------------


def second_model() -> LinearModel:
    """Other weights and other band cut-offs than the first champion."""
    return replace(engagement_model(SECOND), bands=BandCutoffs(medium=0.2, high=0.5))


def assert_served_by(client: TestClient, model: LinearModel, other: LinearModel,
                     customers: list[str]) -> None:  # fmt: skip
    """Each served score and band is ``model``'s own computation on the served features,
    and not ``other``'s: the two models disagree on most customers (on a customer where
    they happen to agree, a score cannot tell them apart), and there the served score is
    ``model``'s."""
    told_apart = 0
    for customer_id in customers:
        body = client.get(f"/customers/{customer_id}/risk").json()
        mine = model.score_one(body["features"])
        assert body["model_version"] == model.version
        assert body["score"] == pytest.approx(mine, abs=1e-6)
        assert body["band"] == model.band_of(mine)
        if abs(mine - other.score_one(body["features"])) > 1e-3:
            told_apart += 1
    assert told_apart >= (len(customers) + 1) // 2, "the models agree: the test proves nothing"


def test_admin_needs_the_key(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/admin/retrain", f"/admin/models/{FIRST}/promote"):
        missing = client.post(path)
        assert missing.status_code == 401
        assert missing.json() == {"detail": "missing X-API-Key header"}
        wrong = client.post(path, headers={"X-API-Key": ADMIN_KEY + "x"})
        assert wrong.status_code == 403
        assert wrong.json() == {"detail": "invalid API key"}
        assert ADMIN_KEY not in wrong.text
    assert client.post("/admin/retrain", headers={"X-API-Key": ADMIN_KEY}).status_code == 202
    assert ADMIN_KEY not in caplog.text


def test_admin_is_disabled_without_keys(
    settings: Settings, registry: ModelRegistry, reports_dir: Path
) -> None:
    app = create_app(settings, api_settings(api_keys=SecretStr("")))
    with TestClient(app) as client:
        for headers in ({}, {"X-API-Key": "anything"}):
            response = client.post("/admin/retrain", headers=headers)
            assert response.status_code == 403
            assert "disabled" in response.json()["detail"]


def test_promote_through_the_api(
    client: TestClient, registry: ModelRegistry, customers: list[str]
) -> None:
    registry.register(second_model(), {"roc_auc": 0.81}, {"source": "test"})
    key = {"X-API-Key": ADMIN_KEY}
    response = client.post(f"/admin/models/{SECOND}/promote", headers=key)
    assert response.status_code == 200, response.text
    assert response.json()["champion"] == SECOND and response.json()["previous"] == FIRST
    assert client.get("/models/current").json()["version"] == SECOND
    assert_served_by(client, second_model(), recency_model(FIRST), customers[:10])
    assert client.get("/stats/risk-distribution").json()["band_cutoffs"] == {
        "medium": 0.2,
        "high": 0.5,
    }
    statuses = {m["version"]: m["status"] for m in client.get("/models").json()["models"]}
    assert statuses == {FIRST: "retired", SECOND: "champion"}

    assert client.post("/admin/models/v-none/promote", headers=key).status_code == 404
    assert client.post("/admin/models/.hidden/promote", headers=key).status_code == 422
    # a tampered artifact is refused and the champion stays
    registry.register(recency_model("tampered"), {}, {})
    artifact = registry.artifact_path("tampered")
    artifact.write_text(artifact.read_text().replace('"intercept": -1.0', '"intercept": 3.0'))
    refused = client.post("/admin/models/tampered/promote", headers=key)
    assert refused.status_code == 409 and "sha256" in refused.json()["detail"]
    assert client.get("/models/current").json()["version"] == SECOND


def test_a_promotion_elsewhere_is_picked_up_by_polling(
    settings: Settings, registry: ModelRegistry, customers: list[str], reports_dir: Path
) -> None:
    fast = settings.model_copy(update={"model_check_seconds": 0.1})
    with TestClient(create_app(fast, api_settings())) as client:
        assert client.get(f"/customers/{customers[0]}/risk").json()["model_version"] == FIRST
        register_and_promote(registry, second_model())  # e.g. by the trainer
        deadline = time.monotonic() + 5
        while client.get("/ready").json()["model_version"] != SECOND:
            assert time.monotonic() < deadline, "the API did not load the new champion"
            time.sleep(0.05)
        assert_served_by(client, second_model(), recency_model(FIRST), customers[:10])

        registry.rollback()  # e.g. `churnstream models rollback`
        deadline = time.monotonic() + 5
        while client.get("/ready").json()["model_version"] != FIRST:
            assert time.monotonic() < deadline, "the API did not load the rolled-back champion"
            time.sleep(0.05)
        assert_served_by(client, recency_model(FIRST), second_model(), customers[:10])


def test_retrain_request_is_recorded_for_the_trainer(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    key = {"X-API-Key": ADMIN_KEY}
    first = client.post("/admin/retrain", headers=key)
    second = client.post("/admin/retrain", headers=key, json={"reason": "campaign launched"})
    assert first.status_code == second.status_code == 202
    assert first.json()["requested_by"] == "api" and first.json()["reason"]
    assert second.json()["reason"] == "campaign launched"
    queued = redis_client.lrange(f"{settings.redis_key_prefix}:retrain:requests", 0, -1)
    assert [json.loads(item) for item in queued] == [second.json(), first.json()]
    assert abs(parse_iso(first.json()["requested_at"]) - time.time()) < 60
    [message] = messages(client.post("/admin/retrain", headers=key, json={"reason": ""}))
    assert message.startswith("reason: ")


def test_read_keys_required(settings: Settings, customers: list[str], reports_dir: Path) -> None:
    app = create_app(settings, api_settings(read_keys_required=True))
    with TestClient(app) as client:
        assert client.get("/customers/at-risk").status_code == 401
        assert client.get("/models", headers={"X-API-Key": "nope"}).status_code == 403
        assert client.get("/models", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        risk = f"/customers/{customers[0]}/risk"  # answered before FastAPI when allowed
        assert client.get(risk).status_code == 401
        assert client.get(risk, headers={"X-API-Key": "nope"}).status_code == 403
        assert client.get(risk, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        for open_path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert client.get(open_path).status_code == 200
    with pytest.raises(ValueError, match="CHURN_API_KEYS is empty"):
        api_settings(read_keys_required=True, api_keys=SecretStr(""))


# --- drift reports ---------------------------------------------------------------------------


def test_drift_reports(client: TestClient, reports_dir: Path) -> None:
    assert client.get("/reports/drift").json() == {"reports": []}
    assert client.get("/reports/drift/latest").status_code == 404

    reports_dir.mkdir(parents=True)
    entries = [
        {"id": "r1", "created_at": "2026-02-01T00:00:00Z", "drift_share": 0.1,
         "dataset_drift": False, "html": "r1.html", "json": "r1.json"},
        {"id": "r2", "created_at": "2026-03-01T00:00:00Z", "drift_share": 0.6,
         "dataset_drift": True, "html": "r2.html", "json": "r2.json"},
        {"id": "gone", "created_at": "2026-01-01T00:00:00Z", "drift_share": 0.0,
         "dataset_drift": False, "html": "gone.html", "json": "gone.json"},
        {"id": "escape", "created_at": "2026-01-01T00:00:00Z", "drift_share": 0.0,
         "dataset_drift": False, "html": "../secret.html", "json": "x.json"},
    ]  # fmt: skip
    (reports_dir / "index.json").write_text(json.dumps(entries))
    (reports_dir / "r1.html").write_text("<html>report one</html>")
    (reports_dir / "r2.html").write_text("<html>report two</html>")
    (reports_dir.parent / "secret.html").write_text("<html>secret</html>")

    listed = client.get("/reports/drift").json()["reports"]
    assert [entry["id"] for entry in listed][:2] == ["r2", "r1"]
    assert listed[0] == entries[1]
    latest = client.get("/reports/drift/latest")
    assert latest.status_code == 200 and latest.text == "<html>report two</html>"
    assert latest.headers["content-type"].startswith("text/html")
    assert client.get("/reports/drift/r1").text == "<html>report one</html>"
    assert client.get("/reports/drift/nope").json() == {"detail": "no drift report 'nope'"}
    assert client.get("/reports/drift/gone").status_code == 404
    escape = client.get("/reports/drift/escape")
    assert escape.status_code == 404 and "secret" not in escape.text

    (reports_dir / "index.json").write_text("{broken")
    assert client.get("/reports/drift").status_code == 503


# --- the OpenAPI schema: documented, and fuzzed ----------------------------------------------


def test_every_route_is_documented_with_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/customers/{customer_id}/risk", "/customers/at-risk", "/stats/risk-distribution",
        "/customers/to-contact",
        "/score", "/score/batch", "/models", "/models/current", "/health", "/ready",
        "/metrics", "/reports/drift", "/reports/drift/latest", "/reports/drift/{report_id}",
        "/admin/models/{version}/promote", "/admin/retrain",
    }  # fmt: skip
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"][next(iter(operation["responses"]))]["content"]
            [(media_type, body)] = content.items()
            ref = body.get("schema", {}).get("$ref", "")
            has_example = "example" in body or (
                ref and "examples" in schemas[ref.rsplit("/", 1)[1]]
            )
            assert has_example, f"{method.upper()} {path} ({media_type}) has no example"
    assert client.get("/docs").status_code == 200


@pytest.fixture(scope="module")
def fuzz_settings(services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One filled store and registry for every fuzzed operation (module scope: filled once)."""
    test_id = "t" + uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp("fuzz")
    settings = isolated_settings(
        services.kafka_bootstrap_servers, services.redis_url, test_id, root
    )
    client = connect_redis(settings)
    register_and_promote(ModelRegistry(settings, client), recency_model(FIRST))
    fill_store(settings, client, customers=20)
    yield settings
    keys = list(client.scan_iter(match=f"{test_id}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings: Settings) -> Iterator[FastAPI]:
    yield create_app(fuzz_settings, api_settings())
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()  # schemathesis ran the app's lifespan; stop its model polling


class DeferredApp:
    """An ASGI app that forwards to ``target``, set later by a fixture: schemathesis needs
    the app when the test module is collected, the filled store exists only in fixtures.
    (``schemathesis.pytest.from_fixture`` would be the usual way, but it fails on pytest 9:
    "'Function' object has no attribute '_nodeid'".)"""

    target: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "the fuzz_app fixture sets the target"
        await self.target(scope, receive, send)


fuzz_target = DeferredApp()
# Building the schema opens nothing: the app's lifespan is not run here.
# The schema the fuzz app serves once its champion (FIRST) is loaded: /score and
# /score/batch require that model's features (serving.openapi).
fuzzed = schemathesis.openapi.from_dict(
    with_champion_features(
        create_app(Settings(), api_settings()).openapi(),
        recency_model(FIRST).feature_names,
        FIRST,
    )
)
fuzzed.app = fuzz_target


@fuzzed.parametrize()
@hypothesis_settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_fuzzed_requests_get_documented_answers_and_no_5xx(case: Any, fuzz_app: FastAPI) -> None:
    fuzz_target.target = fuzz_app
    headers = {"X-API-Key": ADMIN_KEY} if case.path.startswith("/admin") else None
    response = case.call_and_validate(headers=headers)
    assert response.status_code < 500, response.text


def test_the_served_schema_requires_the_champions_features(fuzz_app: FastAPI) -> None:
    with TestClient(fuzz_app) as client:
        served = client.get("/openapi.json").json()
        features = served["components"]["schemas"]["Features"]
        assert features["required"] == list(recency_model(FIRST).feature_names)
        assert features["additionalProperties"] is False
        row = {name: 1.0 for name in features["required"]}
        assert client.post("/score", json={"features": row}).status_code == 200
        del row[features["required"][0]]
        assert client.post("/score", json={"features": row}).status_code == 422


def small_model(version: str, names: tuple[str, ...]) -> LinearModel:
    n = len(names)
    return LinearModel(
        version=version,
        feature_names=names,
        coef=(0.5,) * n,
        intercept=-1.0,
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        lower=(-1e9,) * n,
        upper=(1e9,) * n,
        bands=BandCutoffs(medium=0.4, high=0.7),
    )


def test_the_schema_follows_the_champion_without_a_restart(
    settings: Settings, redis_client: redis.Redis, reports_dir: Path
) -> None:
    registry = ModelRegistry(settings, redis_client)
    register_and_promote(registry, small_model("small-1", ("sessions_7d", "plays_30d")))
    with TestClient(create_app(settings, api_settings())) as client:
        features = client.get("/openapi.json").json()["components"]["schemas"]["Features"]
        assert features["required"] == ["sessions_7d", "plays_30d"]
        assert "small-1" in features["description"]

        register_and_promote(registry, small_model("small-2", ("days_since_last_activity",)))
        client.app.state.services.watcher.refresh()  # type: ignore[attr-defined]
        features = client.get("/openapi.json").json()["components"]["schemas"]["Features"]
        assert features["required"] == ["days_since_last_activity"]
        body = {"features": {"days_since_last_activity": 3.0}}
        assert client.post("/score", json=body).status_code == 200


@pytest.fixture(scope="module")
def live_api(fuzz_settings: Settings) -> Iterator[str]:
    """``churnstream api`` in its own process on the fuzz store; its base URL."""
    (port,) = free_ports(1)
    env = child_env(
        fuzz_settings, {"CHURN_API_KEYS": ADMIN_KEY, "CHURN_API_READ_KEYS_REQUIRED": "false"}
    )
    command = [sys.executable, "-m", "churnstream.cli", "api", "--port", str(port)]
    log = fuzz_settings.run_dir / "api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not get ready in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        stop_process(process, timeout=30)


def test_schemathesis_cli_finds_no_failure_against_a_live_api(
    live_api: str, tmp_path: Path
) -> None:
    """`st run <api>/openapi.json --checks all`, as a user would run it (its cache goes to
    ``tmp_path``, not into the checkout)."""
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{live_api}/openapi.json", "--checks", "all"]
    command += ["--header", f"X-API-Key: {ADMIN_KEY}", "--max-examples", "30", "--seed", "17"]
    command += ["--no-color"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_concurrent_risk_lookups_share_a_batch_and_match_one_by_one(
    settings: Settings, customers: list[str], reports_dir: Path, redis_client: redis.Redis
) -> None:
    """Lookups in flight together are answered from one batch, with the same answers as
    lookups made one at a time (the evaluation time aside)."""
    import asyncio

    import httpx

    app = create_app(settings, api_settings())
    asked = [*customers[:25], "nobody-" + uuid.uuid4().hex, *customers[:5]]

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                together = await asyncio.gather(
                    *(http.get(f"/customers/{cid}/risk") for cid in asked)
                )
                alone = [await http.get(f"/customers/{cid}/risk") for cid in asked]
            return together, alone, app.state.services.risk.largest_batch

    together, alone, largest = asyncio.run(run())
    assert largest > 1
    assert [r.status_code for r in together] == [r.status_code for r in alone]
    assert together[25].status_code == 404 and "unknown" in together[25].json()["detail"]
    for a, b in zip(together, alone, strict=True):
        if a.status_code == 200:
            first, second = a.json(), b.json()
            for body in (first, second):
                body.pop("evaluated_at")
            # recency features move with the clock between the two lookups
            assert first["customer_id"] == second["customer_id"]
            assert first["band"] == second["band"]
            assert first["model_version"] == second["model_version"] == FIRST
            assert math.isclose(first["score"], second["score"], rel_tol=1e-3)
            assert [e["feature"] for e in first["explanations"]] == [
                e["feature"] for e in second["explanations"]
            ]


@pytest.mark.single_redis  # it points the client's one connection pool elsewhere
def test_an_unreachable_redis_is_a_503_not_a_500(client: TestClient, customers: list[str]) -> None:
    assert client.get(f"/customers/{customers[0]}/risk").status_code == 200
    state = client.app.state.services  # type: ignore[attr-defined]
    pool = state.redis.connection_pool
    pool.disconnect()
    pool.connection_kwargs["port"] = free_ports(1)[0]  # nothing listens there: refused
    pool.reset()  # forget the connections made to the real server
    response = client.get(f"/customers/{customers[0]}/risk")
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"]
