"""Performance on delayed labels: scores served at a cutoff, logged from Redis, joined
with the outcomes the event archive shows once the horizon has passed.

The join's population and labels must be exactly those of the training set builder
(:func:`offline.dataset.build_dataset`) at the same cutoff, and the realized ROC AUC that
of the logged scores against them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis
from sklearn.metrics import average_precision_score, roc_auc_score

from core import metrics
from core.archive import EventArchive
from core.keys import Keys
from core.producer import EventProducer
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from monitoring.jobs import labels_job
from monitoring.labels import ScoreLog
from offline.dataset import build_dataset
from offline.simulator import SimulationConfig, simulate
from stream.batch import BatchProcessor
from tests.support_batch import feed
from tests.support_models import recency_model

pytestmark = [pytest.mark.integration, pytest.mark.both_redis]

DAYS, CUTOFF_DAY, HORIZON = 60, 40, 14


def test_realized_performance_matches_the_training_labels(
    settings: Settings, redis_client: redis.Redis
) -> None:
    model = recency_model()
    registry = ModelRegistry(settings, redis_client)
    # the validation ROC AUC recorded for the model is far above what it achieves live
    registry.register(model, {"roc_auc": 0.99}, {"label": "cancellation_or_inactivity",
                                                 "horizon_days": HORIZON})  # fmt: skip
    registry.promote(model.version)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=DAYS
    )
    cutoff = start + timedelta(days=CUTOFF_DAY)
    events = list(simulate(SimulationConfig(customers=150, days=DAYS, seed=21, start=start)))
    before = [e for e in events if e.event_time < cutoff]
    after = [e for e in events if e.event_time >= cutoff]
    store = FeatureStore(redis_client, Keys.of(settings))
    log = ScoreLog(settings.score_log_dir)
    offsets: dict[tuple[str, int], int] = {}
    with EventProducer(settings) as producer:
        # the worker at the cutoff: it scores what it knows then
        at_cutoff = BatchProcessor(settings, store, producer, lambda: model,
                                   clock=lambda: cutoff.timestamp())  # fmt: skip
        feed(at_cutoff, before, 2000, offsets)
        path = log.snapshot(store, cutoff)
        assert path is not None
        later = BatchProcessor(settings, store, producer, lambda: model)
        feed(later, after, 2000, offsets)
        del at_cutoff, later

    # not matured yet one second before the horizon ends
    archive = EventArchive(settings.archive_dir)
    early = cutoff + timedelta(days=HORIZON) - timedelta(seconds=1)
    assert log.evaluate_matured(archive, early, HORIZON, {}, 0.05) == []

    result = labels_job(settings, redis_client)  # now: matured
    [period] = result.periods
    expected = build_dataset(events, [cutoff], HORIZON, observed_until=start + timedelta(days=DAYS))
    logged = json.loads(json.dumps(log.performance()))[0]
    assert logged["period"] == path.name and period.rows == len(expected)
    # the same customers and labels as the training set builder
    scores = dict(zip(*_snapshot(path), strict=True))
    served = np.array([scores[c] for c in expected.customer_ids])
    assert period.positives == int(expected.y.sum())
    assert period.roc_auc == pytest.approx(roc_auc_score(expected.y, served))
    assert period.pr_auc == pytest.approx(average_precision_score(expected.y, served))
    assert period.model_version == model.version and period.validation_roc_auc == 0.99
    assert period.degraded  # far below 0.99
    assert metrics.MONITOR_REALIZED_ROC_AUC._value.get() == pytest.approx(period.roc_auc)
    assert metrics.MONITOR_AUC_DEGRADED._value.get() == 1

    # the drop asks for a retrain, recorded with its numbers
    assert result.decision is not None
    assert (result.decision.decision, result.decision.trigger) == ("retrain_requested", "auc_drop")
    assert result.decision.metrics["realized_roc_auc"] == period.roc_auc
    assert redis_client.llen(Keys.of(settings).retrain_requests) == 1
    # a new snapshot was due (the last one is 20 days old); each period is evaluated once
    assert result.snapshot is not None and len(log.snapshots()) == 2
    assert labels_job(settings, redis_client).periods == []


def _snapshot(path: object) -> tuple[list[str], list[float]]:
    import pandas as pd

    frame = pd.read_parquet(path)  # type: ignore[arg-type]
    return frame["customer_id"].tolist(), frame["score"].tolist()
