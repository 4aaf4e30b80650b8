"""Stored scores read back through the store (``FeatureStore.scores``): pages of the
ranking with each customer's fields, counts per band and stored model versions, merged
over every shard, on a single Redis and on a Redis Cluster."""

from __future__ import annotations

import pytest
import redis

from core.keys import Keys
from core.model import BandCutoffs
from core.score_reads import RankedCustomer
from core.scores import Score
from core.settings import Settings
from core.store import FeatureStore

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]


def _score(customer_id: str, score: float, band: str, version: str = "v1") -> Score:
    return Score(customer_id, score, band, version, scored_at=1000.5, last_event_time=900)


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> FeatureStore:
    store = FeatureStore(redis_client, Keys.of(settings))
    # D's stored band is medium; by the cut-offs below its score is high
    store.write_scores(
        [
            _score("A", 0.9, "high"),
            _score("B", 0.5, "medium", "v2"),
            _score("C", 0.1, "low"),
            _score("D", 0.65, "medium"),
        ]
    )
    return store


def test_pages_of_the_ranking_carry_the_stored_fields(store: FeatureStore) -> None:
    assert len({store.keys.shard_of(c) for c in "ABCD"}) > 1  # the pages are merged
    page = store.scores.at_risk(None, 0, 2)
    assert page.total == 4
    assert page.customers == [
        RankedCustomer("A", 0.9, "high", "v1", 1000.5, 900),
        RankedCustomer("D", 0.65, "medium", "v1", 1000.5, 900),
    ]
    assert [c.customer_id for c in store.scores.at_risk(None, 2, 5).customers] == ["B", "C"]
    medium = store.scores.at_risk("medium", 0, 10)
    assert medium.total == 2 and [c.customer_id for c in medium.customers] == ["D", "B"]
    assert store.scores.at_risk("low", 1, 10).customers == []


def test_counts_per_band_follow_the_cutoffs_given(store: FeatureStore) -> None:
    counts = store.scores.band_counts(BandCutoffs(medium=0.3, high=0.6))
    assert counts == {"low": 1, "medium": 1, "high": 2}
    assert list(counts) == ["low", "medium", "high"]
    assert store.scores.scored() == 4
    assert store.scores.count_in([(0.5, 0.65), ("(0.9", "+inf")]) == [2, 0]


def test_stored_versions_and_times_per_customer(store: FeatureStore) -> None:
    assert store.scores.model_versions(["B", "nobody", "A"]) == ["v2", None, "v1"]
    assert store.scores.scored_at_of(["C", "nobody"]) == [1000.5, None]
    assert store.scores.scores_of(["D"]) == [0.65]
    assert sorted(store.scores.scored_between(1000, "+inf")) == ["A", "B", "C", "D"]
    assert sorted(member for member, _ in store.scores.all_scores()) == [b"A", b"B", b"C", b"D"]
