"""The monitor's moving parts against real Redis: the trigger's records and cooldown, the
retrain queue (requests from the trigger, the API and the CLI, drained into real
retrains), the score stream read for the ADWIN detector, and the band gauges."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from churnstream.monitor_loop import MonitorLoop
from core import metrics
from core.decisions import RetrainRequest, read_decisions
from core.keys import Keys
from core.registry import ModelRegistry
from core.scores import Score
from core.settings import Settings
from core.store import FeatureStore
from monitoring.jobs import band_counts
from monitoring.score_shift import bucket_scores
from monitoring.trigger import TriggerPolicy, Verdict, act_on
from offline.retrain import retrain
from serving.config import ApiSettings
from tests.support_drift import make_scenario, process, streaming
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

DRIFT = Verdict(True, "drift", "dataset drift: 60% of the features drifted", {"drift_share": 0.6})


def test_a_trigger_requests_once_then_waits_for_the_cooldown(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys.of(settings)
    policy = TriggerPolicy(cooldown_seconds=600)
    first = act_on(redis_client, keys, DRIFT, policy, champion="v1")
    second = act_on(redis_client, keys, DRIFT, policy, champion="v1")
    quiet = act_on(redis_client, keys, Verdict(False, "drift", "no dataset drift"), policy, "v1")
    assert (first.decision, second.decision, quiet.decision) == (
        "retrain_requested", "cooldown", "no_retrain",
    )  # fmt: skip
    assert 590 <= second.metrics["cooldown_left_seconds"] <= 600
    assert redis_client.llen(keys.retrain_requests) == 1
    [request] = [json.loads(r) for r in redis_client.lrange(keys.retrain_requests, 0, -1)]
    assert request["trigger"] == "drift" and request["requested_by"] == "monitor"
    assert request["details"] == {"drift_share": 0.6}
    recorded = read_decisions(redis_client, keys)
    assert [d["decision"] for d in recorded] == ["no_retrain", "cooldown", "retrain_requested"]
    assert all(d["champion"] == "v1" and d["decided_at"].endswith("Z") for d in recorded)
    # without a cooldown every verdict asks
    act_on(redis_client, keys, DRIFT, TriggerPolicy(cooldown_seconds=0), champion="v1")
    assert redis_client.llen(keys.retrain_requests) == 2


def test_after_the_cooldown_a_trigger_goes_through_and_manual_requests_never_wait(
    settings: Settings, redis_client: redis.Redis, cli_env: None, tmp_path: Path
) -> None:
    import time

    from churnstream.cli import app
    from serving.main import create_app

    keys = Keys.of(settings)
    policy = TriggerPolicy(cooldown_seconds=3)
    assert act_on(redis_client, keys, DRIFT, policy, "v1").decision == "retrain_requested"
    assert act_on(redis_client, keys, DRIFT, policy, "v1").decision == "cooldown"

    # during the cooldown, manual requests from the CLI and from the API are still queued
    result = CliRunner().invoke(app, ["retrain", "--queue", "--reason", "during the cooldown"])
    assert result.exit_code == 0, result.output
    api_settings = ApiSettings(api_keys=SecretStr("k"))
    with TestClient(create_app(settings, api_settings)) as api:
        asked = api.post("/admin/retrain", json={"reason": "from the API, during the cooldown"},
                         headers={"X-API-Key": "k"})  # fmt: skip
        assert asked.status_code == 202, asked.text
    assert redis_client.ttl(keys.retrain_cooldown) > 0  # the cooldown was still running
    queued = [
        RetrainRequest.from_json(r) for r in redis_client.lrange(keys.retrain_requests, 0, -1)
    ]
    assert [(r.trigger, r.requested_by) for r in reversed(queued)] == [
        ("drift", "monitor"), ("manual", "cli"), ("manual", "api"),
    ]  # fmt: skip

    # once it has expired, the next trigger goes through
    deadline = time.monotonic() + 10
    while redis_client.exists(keys.retrain_cooldown):
        assert time.monotonic() < deadline, "the cooldown did not expire"
        time.sleep(0.1)
    after = act_on(redis_client, keys, DRIFT, policy, "v1")
    assert after.decision == "retrain_requested"
    assert redis_client.llen(keys.retrain_requests) == 4
    assert redis_client.ttl(keys.retrain_cooldown) > 0  # and starts a new cooldown


def test_requests_from_the_api_and_bad_requests_are_drained_and_recorded(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys.of(settings)
    from serving.main import create_app

    app = create_app(settings, ApiSettings(api_keys=SecretStr("k")))
    with TestClient(app) as api:
        asked = api.post("/admin/retrain", json={"reason": "new campaign"},
                         headers={"X-API-Key": "k"})  # fmt: skip
        assert asked.status_code == 202
        redis_client.lpush(keys.retrain_requests, b"{not json")
        # the real retrainer, on an empty archive: it fails, and says why
        outcomes = MonitorLoop(settings, redis_client).drain_requests()
        assert [o.decision.decision for o in outcomes] == ["retrain_failed"]
        assert "new campaign" in outcomes[0].decision.reason
        assert "archive" in outcomes[0].decision.reason and "empty" in outcomes[0].decision.reason
        assert redis_client.llen(keys.retrain_requests) == 0
        decisions = api.get("/models").json()["decisions"]
    # newest first: the API's request was taken first (oldest first), then the bad one
    assert [d["decision"] for d in decisions] == ["retrain_failed", "retrain_failed"]
    assert "unreadable retrain request" in decisions[0]["reason"]
    assert decisions[1]["trigger"] == "manual" and "new campaign" in decisions[1]["reason"]


def test_manual_retrain_from_the_cli_runs_the_gate(
    settings: Settings, redis_client: redis.Redis, cli_env: None
) -> None:
    scenario = make_scenario(settings, redis_client, customers=250, seed=5)
    with streaming(settings, redis_client, scenario.champion) as worker:
        process(worker, scenario, scenario.before + scenario.after)
    from churnstream.cli import app

    result = CliRunner().invoke(app, ["retrain", "--reason", "quarterly refresh", "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout.strip().splitlines()[-1])
    assert decision["trigger"] == "manual" and "quarterly refresh" in decision["reason"]
    # The scenario ends at today's midnight and the retrain's weekly cutoffs count back
    # from the wall clock, so which model wins depends on the day it runs (the two ROC
    # AUCs lie within about 0.01 of each other). Whichever it is, the decision must be the
    # one the gate's own figures give, and the registry must follow it.
    gate = decision["metrics"]
    champion = ModelRegistry(settings, redis_client).champion()
    assert champion is not None
    assert gate["candidate_roc_auc"] is not None and gate["champion_roc_auc"] is not None
    if gate["candidate_roc_auc"] > gate["champion_roc_auc"] + settings.promotion_min_gain:
        assert decision["decision"] == "promoted" and decision["promoted"] is True
        assert "beats champion" in decision["reason"]
        assert champion.version == decision["candidate"] != scenario.champion.version
    else:
        assert decision["decision"] == "kept_champion", decision["reason"]
        assert decision["promoted"] is False
        assert "does not beat" in decision["reason"]
        assert champion.version == scenario.champion.version
    assert read_decisions(redis_client, Keys.of(settings))[0] == decision


def test_a_retrain_is_not_blocked_by_a_champion_whose_artifact_is_gone(
    settings: Settings, redis_client: redis.Redis
) -> None:
    scenario = make_scenario(settings, redis_client, customers=250, seed=5)
    with streaming(settings, redis_client, scenario.champion) as worker:
        process(worker, scenario, scenario.before + scenario.after)
    registry = ModelRegistry(settings, redis_client)
    shutil.rmtree(registry.path_of(scenario.champion.version))  # the pointer stays

    outcome = retrain(settings, redis_client)
    decision = outcome.decision
    assert decision.decision == "promoted" and decision.promoted, decision.reason
    assert decision.metrics["unloadable_champion"] == scenario.champion.version
    assert f"champion {scenario.champion.version} cannot be loaded" in decision.reason
    assert "counts as no champion" in decision.reason
    assert registry.champion().version == decision.candidate  # type: ignore[union-attr]
    assert read_decisions(redis_client, Keys.of(settings))[0]["promoted"]


def test_the_score_stream_and_the_band_gauges(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys.of(settings)
    store = FeatureStore(redis_client, keys)
    model = recency_model()  # bands: medium >= 0.4, high >= 0.7
    written = [(f"c{i}", s, t) for i, (s, t) in
               enumerate([(0.1, 100.0), (0.5, 150.0), (0.8, 200.0), (0.39, 250.0), (0.7, 300.0)])]  # fmt: skip
    store.write_scores([Score(c, s, model.band_of(s), model.version, t, 0) for c, s, t in written])
    assert sorted(bucket_scores(store, 100.0, 250.0).tolist()) == [0.39, 0.5, 0.8]  # (100, 250]
    assert bucket_scores(store, 300.0, 400.0).size == 0
    assert band_counts(redis_client, keys, model) == {"low": 2, "medium": 1, "high": 2}
    assert metrics.MONITOR_CUSTOMERS_BY_BAND.labels("high")._value.get() == 2
    np.testing.assert_allclose(
        bucket_scores(store, 0, 1000).mean(), np.mean([w[1] for w in written])
    )


def test_the_monitor_process_drains_requests_and_serves_its_metrics(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    import subprocess
    import time
    import urllib.request

    from core.decisions import RetrainRequest, push_retrain_request
    from tests.support import CLI, REPO_ROOT, child_env, free_ports

    port = free_ports(1)[0]
    env = child_env(
        settings.model_copy(
            update={"monitor_metrics_port": port, "score_shift_bucket_seconds": 0.5}
        )
    )
    keys = Keys.of(settings)
    log_path = tmp_path / "monitor.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CLI, "monitor"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        push_retrain_request(redis_client, keys, RetrainRequest("from a test", "test"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not read_decisions(redis_client, keys):
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.2)
        [decision] = read_decisions(redis_client, keys)
        assert decision["decision"] == "retrain_failed" and "from a test" in decision["reason"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'churn_monitor_retrains_total{outcome="failed"} 1.0' in page
        assert 'churn_monitor_drift_runs_total{result="skipped"} 1.0' in page  # no champion
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, log_path.read_text()
    assert "monitor stopped" in log_path.read_text()
