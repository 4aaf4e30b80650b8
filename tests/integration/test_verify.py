"""`churnstream verify` against a real run: Kafka, Redis, the worker, the event archive.

After the worker has drained the topics, verify reports every customer consistent; after
one customer's Redis hash is tampered with, deleted, or a customer is made up, it exits 1
and names them; archived rows above the fences (a batch archived just before a crash) are
left out, and counted in once the fence says they were applied.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from typer.testing import CliRunner

from core.aggregates import C
from core.archive import ArchivedEvent, EventArchive
from core.events import Event, ItemReactionPayload, Like, encode_event
from core.keys import Keys
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.consistency import FeatureDiff
from offline.simulator import SimulationConfig, simulate
from offline.verify import verify
from tests.integration.test_worker import produce
from tests.support import CLI, REPO_ROOT, child_env
from tests.support_worker import started_worker, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=25)


def run_verify(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "verify", "-q", *args],
        capture_output=True, text=True, env=child_env(settings), cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip


def verify_json() -> tuple[int, dict[str, Any]]:
    """`churnstream verify --json` in this process (settings from the ``cli_env`` fixture)."""
    from churnstream.cli import app

    result = CliRunner().invoke(app, ["verify", "--json", "-q"])
    assert result.stdout, (result.stderr, result.exception)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def drained(settings: Settings, tmp_path: Path, redis_client: redis.Redis) -> Iterator[list[Event]]:
    """A worker that has applied 40 simulated customers' events (and is then stopped)."""
    worker = started_worker(settings, tmp_path / "worker.log")
    try:
        events = list(simulate(SimulationConfig(customers=40, days=20, seed=21, start=START)))
        produce(settings, events)
        wait_drained(settings)
    finally:
        worker.stop()
    yield events


@pytest.mark.usefixtures("cli_env")
def test_verify_passes_after_a_run_and_names_a_tampered_customer(
    settings: Settings, drained: list[Event], redis_client: redis.Redis
) -> None:
    customers = sorted({e.customer_id for e in drained})
    code, report = verify_json()
    assert code == 0, report
    assert report["ok"] is True
    assert report["customers_compared"] == len(customers)
    assert (report["mismatched"], report["missing"], report["extra"]) == (0, 0, 0)
    assert report["events_counted"] == len(drained)
    assert report["rows_beyond_watermark"] == 0
    assert all(f["max_abs_diff"] == 0 and f["smape_percent"] == 0 for f in report["features"])
    assert report["reference_time"] == (
        max(e.event_time for e in drained).replace(microsecond=0) + timedelta(seconds=1)
    ).isoformat().replace("+00:00", "Z")

    # The same answer when customers are read in many small ranges and chunks.
    store = FeatureStore(redis_client, Keys.of(settings))
    small = verify(
        store, EventArchive(settings.archive_dir), Topics.from_settings(settings),
        settings.retention_days, max_events_in_memory=500, chunk_customers=3, chunk_events=200,
        dedup_days=settings.dedup_days,
    )  # fmt: skip
    assert report["rows_at_watermark"] > 4 * 500  # so several ranges were read
    assert small.ok and small.customers_compared == len(customers)
    assert small.events_counted == len(drained) and small.features == [
        FeatureDiff(**f) for f in report["features"]
    ]

    # One more play counted in one of the victim's day tiles, as a bug would.
    victim = customers[len(customers) // 2]
    key = Keys.of(settings).customer(victim)
    field = max(f for f in redis_client.hkeys(key) if f.startswith(b"d:"))
    counters, *hashes = msgspec.msgpack.decode(redis_client.hget(key, field))
    counters = counters + [0] * (C["page_view"] + 1 - len(counters))
    counters[C["page_view"]] += 1
    redis_client.hset(key, field, msgspec.msgpack.encode([counters, *hashes]))

    code, report = verify_json()
    assert code == 1
    assert report["ok"] is False
    assert report["mismatched"] == 1 and report["mismatched_ids"] == [victim]
    assert report["mismatch_rate"] == pytest.approx(1 / len(customers))
    assert report["state_mismatches"] == 1
    assert any("page_view" in line for line in report["examples"][victim])
    by_name = {f["name"]: f for f in report["features"]}
    assert by_name["page_views_30d"]["max_abs_diff"] == 1.0
    assert by_name["page_views_30d"]["mismatched"] == 1
    assert by_name["revenue_90d"]["max_abs_diff"] == 0.0

    human = run_verify(settings)
    assert human.returncode == 1
    assert "INCONSISTENT" in human.stdout and victim in human.stdout


@pytest.mark.usefixtures("cli_env")
def test_missing_and_extra_customers_are_named(
    settings: Settings, drained: list[Event], redis_client: redis.Redis
) -> None:
    keys = Keys.of(settings)
    customers = sorted({e.customer_id for e in drained})
    gone = customers[0]
    redis_client.copy(keys.customer(gone), keys.customer("ghost-customer"))
    redis_client.delete(keys.customer(gone))
    code, report = verify_json()
    assert code == 1
    assert report["missing_ids"] == [gone] and report["missing"] == 1
    assert report["extra_ids"] == ["ghost-customer"] and report["extra"] == 1
    assert report["mismatched"] == 0
    assert report["customers_compared"] == len(customers) - 1


@pytest.mark.usefixtures("cli_env")
def test_archived_rows_beyond_the_fence_are_left_out_until_the_fence_covers_them(
    settings: Settings, drained: list[Event], redis_client: redis.Redis
) -> None:
    topics = Topics.from_settings(settings)
    keys = Keys.of(settings)
    fence_key = keys.fence(topics.activity, 0)
    fence = int(redis_client.get(fence_key) or -1)
    assert fence >= 0
    customer = next(e.customer_id for e in drained)
    late = [
        Like(
            event_id=f"beyond-{i}",
            customer_id=customer,
            event_time=START + timedelta(days=3, hours=i),
            payload=ItemReactionPayload(),
        )
        for i in range(3)
    ]
    # A batch archived by a worker that crashed before committing it to Redis.
    EventArchive(settings.archive_dir).write(
        [
            ArchivedEvent(e, encode_event(e), topics.activity, 0, fence + 1 + i)
            for i, e in enumerate(late)
        ],
        source="worker",
    )
    code, report = verify_json()
    assert code == 0, report
    assert report["rows_beyond_watermark"] == 3

    redis_client.set(fence_key, fence + 3)  # as if the batch had been committed, minus its data
    code, report = verify_json()
    assert code == 1
    assert report["mismatched_ids"] == [customer]
    assert report["rows_beyond_watermark"] == 0
    assert any("only in the expected state" in line for line in report["examples"][customer])


@pytest.mark.usefixtures("cli_env")
def test_nothing_to_verify_without_worker_progress(settings: Settings) -> None:
    from churnstream.cli import app

    result = CliRunner().invoke(app, ["verify", "--json", "-q"])
    assert result.exit_code == 2
    assert "no offset fences" in result.stderr and settings.redis_key_prefix in result.stderr
