"""Backfilling a fresh system from an Online Retail file with the real commands (import,
train, worker, replay) against the real Kafka and Redis: every event applied, every
customer scored as of the day after the data ends, and verify exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from rich.console import Console

from churnstream.demo.backfill import backfill_online_retail, retail_settings
from core.archive import EventArchive
from core.keys import Keys
from core.settings import Settings
from tests.support import every_shard
from tests.support_data import write_online_retail_csv

pytestmark = pytest.mark.integration


def test_backfill_applies_every_event_and_scores_as_of_the_end(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = write_online_retail_csv(tmp_path / "shop.csv", customers=250)
    retail = retail_settings(settings, prefix=f"{settings.redis_key_prefix}retail")
    console = Console(record=True, width=120)
    done = backfill_online_retail(console, retail, data, keep_worker=False)

    report = done.report
    assert report["events_written"] > 1000 and report["rejects"]["missing_customer"] > 0
    assert done.events_applied == report["events_written"]
    assert done.as_of is not None
    assert done.as_of.isoformat()[:10] > report["last_event"][:10]
    assert set(done.seconds) == {"import", "train", "replay", "worker_catch_up", "total"}

    keys = Keys.of(retail)
    assert len(every_shard(redis_client, keys, "risk")) == report["customers"]
    scored_at = {float(s) for _, s in every_shard(redis_client, keys, "scored_at")}
    assert scored_at == {done.as_of.timestamp()}
    archive = EventArchive(retail.archive_dir)
    assert archive.count() == report["events_written"]

    from churnstream.demo.backfill import run_command

    checked = retail.model_copy(update={"as_of": done.as_of})
    output = run_command(console, checked, ["verify", "--json", "-q"], capture=True)
    verdict = json.loads(output)
    assert verdict["ok"] and verdict["customers_compared"] == report["customers"]
    printed = console.export_text()
    for step in ("import online-retail", "train --data online-retail", "replay", "verify"):
        assert f"$ churnstream {step}" in printed
