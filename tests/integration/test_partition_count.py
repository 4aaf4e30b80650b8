"""The worker refuses to start when the input topics' partition count differs from
CHURN_TOPIC_PARTITIONS: the Redis key layout has one shard per partition."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.kafka_client import ensure_topics
from core.settings import Settings, get_settings

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("cli_env")
def test_worker_refuses_topics_with_another_partition_count(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_topics(settings)  # 3 partitions
    monkeypatch.setenv("CHURN_TOPIC_PARTITIONS", "4")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2, result.output
    assert "has 3 partitions but CHURN_TOPIC_PARTITIONS is 4" in result.output
