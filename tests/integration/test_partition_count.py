"""The input topics as the worker finds them: it refuses to start when their partition
count differs from CHURN_TOPIC_PARTITIONS (the Redis key layout has one shard per
partition), and their end offsets can be read the moment they are created."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.kafka_client import ensure_topics, input_end_offsets
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


def test_end_offsets_of_topics_created_a_moment_ago(settings: Settings) -> None:
    """Right after creating a topic, the broker may answer NOT_LEADER_FOR_PARTITION until
    the partition's leader is in place: reading the ends asks again, it does not fail."""
    for attempt in range(5):
        fresh = settings.model_copy(
            update={"topic_prefix": f"{settings.topic_prefix}new{attempt}."}
        )
        ensure_topics(fresh)
        ends = input_end_offsets(fresh)
        assert len(ends) == 2 * fresh.topic_partitions
        assert set(ends.values()) == {0}
