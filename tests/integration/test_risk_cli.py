"""``churnstream risk CUSTOMER_ID`` against a real Redis (a single server and a cluster)
filled by the worker's code: the JSON answer is the live assessment at ``CHURN_AS_OF``, the
table shows the score, band and reasons, and an unknown customer exits 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis
from typer.testing import CliRunner

from churnstream.cli import app
from core.keys import Keys
from core.registry import ModelRegistry
from core.risk import assess
from core.settings import Settings
from core.store import FeatureStore
from tests.integration.test_api import fill_store, register_and_promote
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


@pytest.fixture
def customers(settings: Settings, redis_client: redis.Redis, cli_env: None) -> list[str]:
    register_and_promote(ModelRegistry(settings, redis_client), recency_model("test-risk-cli"))
    return fill_store(settings, redis_client, customers=30)


def test_the_answer_is_the_live_assessment_at_the_scoring_time(
    customers: list[str],
    settings: Settings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    monkeypatch.setenv("CHURN_AS_OF", at.isoformat())
    store = FeatureStore(redis_client, Keys.of(settings))
    model = ModelRegistry(settings, redis_client).load_champion()
    for customer_id in customers[:8]:
        result = CliRunner().invoke(app, ["risk", customer_id, "--json"])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        expected = assess(store, model, customer_id, at.timestamp())
        assert expected is not None
        assert answer["customer_id"] == customer_id
        assert answer["model_version"] == "test-risk-cli"
        assert answer["score"] == expected.score
        assert answer["band"] == expected.band
        assert answer["features"] == expected.features
        assert answer["at"] == at.timestamp()

    table = CliRunner().invoke(app, ["risk", customers[0]])
    assert table.exit_code == 0, table.output
    first = assess(store, model, customers[0], at.timestamp())
    assert first is not None and first.score is not None
    assert customers[0] in table.stdout
    assert f"risk {first.score:.3f}" in table.stdout
    assert f"band {first.band}" in table.stdout


def test_an_unknown_customer_exits_1_and_says_so(customers: list[str]) -> None:
    result = CliRunner().invoke(app, ["risk", "nobody-at-all"])
    assert result.exit_code == 1
    assert "unknown customer" in result.output and "nobody-at-all" in result.output
