"""End to end: a product change is seen by the drift report, a retrain runs, the gate
decides, and the running worker scores with the new champion.

Real Kafka, real Redis, `churnstream worker` as a subprocess; the other steps through the
CLI as a user runs them (`train --bootstrap`, `simulate --drift-at`, `produce`,
`monitor --once`):

1. the champion is the bootstrap model trained on 49 days of the service (seed 5, no
   change), so its reference sample is the service as it was at day 35;
2. the simulator writes 84 days of the same service (seed 5) with a product change from
   day 35 on (`--drift-at 35`), ending at midnight today;
3. the events before the change are streamed through the worker; the drift report as of
   the change flags no dataset drift, and the trigger records `no_retrain`;
4. the rest is streamed; `churnstream monitor --once` finds dataset drift, requests a
   retrain, runs it on the archive's latest window, and the gate promotes the candidate
   only because its ROC AUC on the same recent validation rows beats the champion's;
5. the worker picks up the new champion without a restart and re-scores every customer
   with it; `GET /models` lists the decisions.

With seed 5 the retrained model wins (ROC AUC ~0.88 against ~0.85 on ~580 rows): the run
is deterministic, the dates move with today but the days relative to the change do not.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.kafka_client import ensure_topics
from core.keys import Keys
from core.registry import ModelRegistry
from core.settings import Settings
from monitoring.jobs import drift_job
from serving.config import ApiSettings
from tests.support import every_shard, stored_score
from tests.support_worker import WorkerProcess, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

CUSTOMERS = 400
DAYS = 84
DRIFT_AT = 35
SEED = 5


@pytest.fixture
def e2e_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rescore_after_seconds": 3,  # after a promotion every customer is re-scored soon
            "rescore_tick_seconds": 0.5,
            "model_check_seconds": 0.5,
            "retrain_cooldown_seconds": 3600,
        }
    )


@pytest.fixture
def cli(e2e_settings: Settings, cli_env: None, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    from core.settings import get_settings

    monkeypatch.setenv("CHURN_RETRAIN_COOLDOWN_SECONDS", "3600")
    get_settings.cache_clear()
    return CliRunner()


@pytest.fixture
def worker(e2e_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    ensure_topics(e2e_settings)
    process = WorkerProcess(e2e_settings, tmp_path / "worker.log")
    yield process
    process.stop()


def invoke(cli: CliRunner, *args: str) -> str:
    from churnstream.cli import app

    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, f"churnstream {' '.join(args)}: {result.output}"
    return result.stdout


def split_at(path: Path, change: datetime, before: Path, after: Path) -> list[set[str]]:
    """Split a JSONL file (in event-time order) at ``change``; return the customers of
    each part."""
    customers: list[set[str]] = [set(), set()]
    with path.open() as lines, before.open("w") as b, after.open("w") as a:
        for line in lines:
            event = json.loads(line)
            when = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
            target = 0 if when < change else 1
            (b, a)[target].write(line)
            customers[target].add(event["customer_id"])
    return customers


def wait_until(condition: object, what: str, timeout: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:g} s\n{worker.log_tail()}")


def test_drift_triggers_a_gated_retrain_and_the_worker_scores_with_the_winner(
    e2e_settings: Settings,
    redis_client: redis.Redis,
    cli: CliRunner,
    worker: WorkerProcess,
    tmp_path: Path,
) -> None:
    settings = e2e_settings
    keys = Keys.of(settings)
    registry = ModelRegistry(settings, redis_client)

    # 1. the champion, as a fresh install gets it
    trained = json.loads(
        invoke(cli, "train", "--bootstrap", "--customers", str(CUSTOMERS), "--days", "49",
               "--seed", str(SEED), "--json")
    )  # fmt: skip
    champion = trained["version"]
    assert registry.champion().version == champion  # type: ignore[union-attr]

    # 2. the service's events, with the product change from day 35
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=DAYS
    )
    change = start + timedelta(days=DRIFT_AT)
    events = tmp_path / "events.jsonl"
    invoke(cli, "simulate", "--customers", str(CUSTOMERS), "--days", str(DAYS),
           "--seed", str(SEED), "--start", start.isoformat(), "--drift-at", str(DRIFT_AT),
           "--out", str(events), "--quiet")  # fmt: skip
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    seen_before, seen_after = split_at(events, change, before, after)
    assert len(seen_before) > 200 and len(seen_after) > 200

    # 3. up to the change: no dataset drift
    worker.start()
    invoke(cli, "produce", str(before))
    wait_drained(settings, timeout=180)
    assert len(every_shard(redis_client, keys, "risk")) == len(seen_before)
    quiet, decision = drift_job(settings, redis_client, as_of=change.timestamp())
    assert quiet.summary is not None, quiet.skipped
    assert not quiet.summary.dataset_drift, quiet.summary.drifted_features
    assert quiet.summary.drift_share < settings.drift_share_threshold / 2
    assert decision is not None and decision.decision == "no_retrain"
    assert redis_client.llen(keys.retrain_requests) == 0

    # 4. past the change: drift, a retrain request, the retrain, the gate
    invoke(cli, "produce", str(after))
    wait_drained(settings, timeout=180)
    result = json.loads(invoke(cli, "monitor", "--once", "--json"))
    # the monitor reports a failing job as {"error": ...} and still exits 0: none failed
    for job in ("drift", "labels", "challenger"):
        assert "error" not in (result.get(job) or {}), (job, result[job])
    assert "challenger" in result and "labels" in result, sorted(result)
    drift = result["drift"]
    assert drift["dataset_drift"] is True, drift
    assert drift["drift_share"] >= settings.drift_share_threshold
    assert result["drift_decision"]["decision"] == "retrain_requested"
    assert result["drift_decision"]["trigger"] == "drift"
    [retrained] = result["retrains"]
    gate = retrained["metrics"]
    candidate = retrained["candidate"]
    assert candidate and candidate != champion
    assert gate["gate_rows"] > 300
    # the gate: promoted exactly when the candidate beats the champion on the same rows
    assert retrained["promoted"] is (gate["candidate_roc_auc"] > gate["champion_roc_auc"])
    assert retrained["decision"] == "promoted", retrained["reason"]
    assert registry.champion().version == candidate  # type: ignore[union-attr]
    manifest = registry.manifest(candidate)
    assert manifest.training["source"] == "archive" and manifest.reference_sha256
    recorded = manifest.metrics["gate"]
    assert recorded["champion_roc_auc"] == gate["champion_roc_auc"]
    assert recorded["champion"] == champion and recorded["passed"] is True

    # 5. the running worker scores with the new champion, without a restart
    def all_rescored() -> bool:
        ids = [m.decode() for m, _ in every_shard(redis_client, keys, "risk")]
        versions = [
            getattr(stored_score(redis_client, keys, c), "model_version", None) for c in ids
        ]
        return bool(ids) and all(v == candidate for v in versions)

    wait_until(all_rescored, "every customer re-scored with the new champion", 60, worker)
    page = (
        urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    assert f'churn_worker_model_info{{version="{candidate}"}} 1.0' in page
    assert worker.process is not None and worker.process.poll() is None  # never restarted

    # every decision is visible in GET /models, newest first
    from serving.main import create_app

    with TestClient(create_app(settings, ApiSettings())) as api:
        models = api.get("/models").json()
    assert models["champion"] == candidate
    kinds = [(d["decision"], d["trigger"]) for d in models["decisions"]]
    assert kinds[:3] == [("promoted", "drift"), ("retrain_requested", "drift"),
                         ("no_retrain", "drift")]  # fmt: skip
    assert models["decisions"][0]["metrics"]["candidate_roc_auc"] == gate["candidate_roc_auc"]
    statuses = {m["version"]: m["status"] for m in models["models"]}
    assert statuses == {champion: "retired", candidate: "champion"}
