"""The river challenger in shadow: it learns only from matured labels, the labels are right,
and it learns something."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
from sklearn.metrics import roc_auc_score

from offline.challenger import ShadowChallenger, shadow_replay, shadow_report
from offline.transactions import TransactionTrainingConfig, train_on_transactions
from tests.unit.test_transactions import T0, purchase, refund, shop


def test_shadow_challenger_learns_only_from_matured_labels() -> None:
    events = shop(customers=300, days=420, seed=4)
    config = TransactionTrainingConfig(horizon_days=60, retention_days=400, with_boosting=False)
    champion = train_on_transactions(events, config).model
    start = events[0].event_time + timedelta(days=30)

    # Stop half-way: nothing scored less than 60 days before the last event may be learned.
    half = [e for e in events if e.event_time < start + timedelta(days=200)]
    partial = shadow_replay(half, champion, start=start, every_days=14, horizon_days=60)
    last_scoring = max(m.at for m in partial.matured)
    assert last_scoring + 60 * 86400 <= half[-1].event_time.timestamp()
    assert partial.pending > 0 and partial.learned == len(partial.matured)

    shadow = shadow_replay(events, champion, start=start, every_days=14, horizon_days=60)
    for m in shadow.matured[::37]:  # labels agree with a brute-force look at the window
        bought = any(
            e.customer_id == m.customer and e.type == "purchase"
            and m.at < e.event_time.timestamp() <= m.at + 60 * 86400
            for e in events
        )  # fmt: skip
        assert m.label == (0 if bought else 1)
    report = shadow_report(shadow)
    assert report["learned"] == len(shadow.matured) > 500
    late = [m for m in shadow.matured if m.at >= shadow.matured[-1].at - 90 * 86400]
    y = np.array([m.label for m in late])
    assert roc_auc_score(y, [m.challenger for m in late]) > 0.6  # it learned real signal
    assert report["by_scoring_date"][-1]["challenger_roc_auc"] > 0.5


def test_untrained_challenger_scores_neutral_and_only_purchases_count() -> None:
    shadow = ShadowChallenger(horizon_days=10)
    t0 = int(T0.timestamp())
    assert shadow.score("c1", t0, {"a": 1.0}, 0.7) == 0.5
    assert shadow.score("c2", t0, {"a": 2.0}, 0.2) == 0.5
    shadow.observe(refund("c1", T0 + timedelta(days=3), "r1"))  # a refund is not a purchase
    shadow.observe(purchase("c2", T0 + timedelta(days=10), "p1", random.Random(0)))  # last second
    shadow.observe(purchase("c1", T0 + timedelta(days=10, seconds=1), "p2", random.Random(0)))
    assert shadow.mature(t0 + 9 * 86400) == 0 and shadow.pending == 2
    assert shadow.mature(t0 + 10 * 86400) == 2
    assert {m.customer: m.label for m in shadow.matured} == {"c1": 1, "c2": 0}
    assert shadow.learned == 2 and shadow.pending == 0
