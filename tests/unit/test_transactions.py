"""Training on transaction data: the no-purchase label, no leakage across the cutoff with
year-long windows and line items, the cutoff plan, the RFM baseline, the sign-bound fit, and
risk that never falls while a customer stays silent."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.aggregates import CustomerAggregates
from core.events import Event, LineItem, Purchase, PurchasePayload, Refund, RefundPayload
from core.features import TRANSACTION_FEATURE_NAMES, feature_matrix, silence_direction
from offline.dataset import Dataset, build_dataset
from offline.train import fit_linear
from offline.transactions import (
    TransactionTrainingConfig,
    month_starts,
    plan_cutoffs,
    rfm_features,
    train_on_transactions,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CUT = T0 + timedelta(days=150)
HORIZON = 60
NAMES = list(TRANSACTION_FEATURE_NAMES)


def at(day: float) -> datetime:
    return T0 + timedelta(days=day)


def purchase(customer: str, when: datetime, eid: str, rng: random.Random) -> Purchase:
    lines = [
        LineItem(sku=f"sku-{rng.randrange(40)}", quantity=rng.randrange(1, 24),
                 unit_price=round(rng.uniform(0.5, 15), 2))
        for _ in range(rng.randrange(1, 6))
    ]  # fmt: skip
    payload = PurchasePayload(
        order_id=eid,
        amount=round(sum(li.quantity * li.unit_price for li in lines), 2),
        quantity=sum(li.quantity for li in lines),
        lines=lines,
    )
    return Purchase(event_id=eid, customer_id=customer, event_time=when, payload=payload)


def refund(customer: str, when: datetime, eid: str) -> Refund:
    payload = RefundPayload(order_id=eid, amount=12.5, quantity=2)
    return Refund(event_id=eid, customer_id=customer, event_time=when, payload=payload)


def shop(customers: int = 160, days: int = 300, seed: int = 3) -> list[Event]:
    """Customers with their own purchase pace, some of whom stop buying; a few refunds."""
    rng = random.Random(seed)
    events: list[Event] = []
    for c in range(customers):
        name = f"c{c}"
        start = rng.uniform(0, days * 0.6)
        stop = start + rng.expovariate(1 / 150)
        gap = rng.uniform(5, 60)
        t, n = start, 0
        while t < min(stop, days):
            events.append(purchase(name, at(t), f"{name}-p{n}", rng))
            if rng.random() < 0.1:
                events.append(refund(name, at(t + rng.uniform(0.1, 5)), f"{name}-r{n}"))
            t += rng.expovariate(1 / gap)
            n += 1
    return sorted(events, key=lambda e: (e.event_time, e.event_id))


def rows_at(ds: Dataset, cutoff: datetime) -> dict[str, int]:
    t = int(cutoff.timestamp())
    return {ds.customer_ids[i]: i for i in np.flatnonzero(ds.cutoffs == t).tolist()}


def build(events: list[Event]) -> Dataset:
    ordered = sorted(events, key=lambda e: (e.event_time, e.event_id))
    return build_dataset(
        ordered, [at(90), CUT], HORIZON, label="no_purchase", retention_days=400,
        observed_until=at(300), feature_names=NAMES,
    )  # fmt: skip


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return shop()


def perturb(events: list[Event], rng: random.Random, side: str) -> list[Event]:
    """Drop, reprice and add purchases and refunds strictly after (or before) CUT."""
    after = side == "after"
    keep = [e for e in events if (e.event_time > CUT) != after]
    touched = [e for e in events if (e.event_time > CUT) == after and rng.random() < 0.6]
    touched = [
        msgspec.structs.replace(e, payload=msgspec.structs.replace(e.payload, amount=99.0))
        if isinstance(e, Purchase) and rng.random() < 0.5
        else e
        for e in touched
    ]
    lo, hi = (CUT, at(300)) if after else (at(0), CUT)
    span = (hi - lo).total_seconds()
    for i in range(300):
        when = lo + timedelta(seconds=1 + rng.random() * (span - 2))
        customer = f"c{rng.randrange(170)}"  # c160..c169 are new customers
        touched.append(
            refund(customer, when, f"add-r{i}") if i % 5 == 0
            else purchase(customer, when, f"add-p{i}", rng)
        )  # fmt: skip
    return keep + touched


def built_and_perturbed(
    events: list[Event], seed: int, side: str
) -> tuple[Dataset, Dataset, dict[str, int], dict[str, int]]:
    """The dataset of ``events`` and of their perturbation on ``side`` of CUT, with the
    rows of each at CUT."""
    base, other = build(events), build(perturb(events, random.Random(seed), side))
    return base, other, rows_at(base, CUT), rows_at(other, CUT)


@pytest.mark.parametrize("seed", [1, 2])
def test_events_after_a_cutoff_never_change_its_transaction_features(
    events: list[Event], seed: int
) -> None:
    base, other, rows, other_rows = built_and_perturbed(events, seed, "after")
    assert len(rows) > 80 and list(rows) == list(other_rows)
    assert np.array_equal(base.X[list(rows.values())], other.X[list(other_rows.values())])


@pytest.mark.parametrize("seed", [1, 2])
def test_events_before_a_cutoff_never_change_its_no_purchase_label(
    events: list[Event], seed: int
) -> None:
    base, other, rows, other_rows = built_and_perturbed(events, seed, "before")
    common = [c for c in rows if c in other_rows]
    assert len(common) > 80 and len(other_rows) > len(common)
    assert [base.y[rows[c]] for c in common] == [other.y[other_rows[c]] for c in common]
    assert not np.array_equal(
        base.X[[rows[c] for c in common]], other.X[[other_rows[c] for c in common]]
    )


def test_no_purchase_label_ignores_refunds(events: list[Event]) -> None:
    window = [e for e in events if CUT < e.event_time <= CUT + timedelta(days=HORIZON)]
    buyers = {e.customer_id for e in window if e.type == "purchase"}
    seen = {e.customer_id for e in events if e.event_time < CUT}
    silent = sorted(seen - buyers)[:10]
    assert len(silent) == 10
    refunds = [refund(c, CUT + timedelta(days=5), f"{c}-late-refund") for c in silent]
    ds = build(events + refunds)
    rows = rows_at(ds, CUT)
    assert {c for c, r in rows.items() if ds.y[r] == 0} == buyers & set(rows)
    assert all(ds.y[rows[c]] == 1 for c in silent)  # a refund is not a purchase


def test_features_come_from_the_worker_code(events: list[Event]) -> None:
    ds = build(events)
    rows = rows_at(ds, CUT)
    aggs: dict[str, CustomerAggregates] = {}
    for e in events:
        if e.event_time < CUT:
            aggs.setdefault(e.customer_id, CustomerAggregates(e.customer_id)).apply(e, 400)
    expected = feature_matrix([aggs[c] for c in rows], int(CUT.timestamp()), NAMES)
    assert np.array_equal(ds.X[list(rows.values())], expected)
    basket = ds.X[list(rows.values()), NAMES.index("lines_per_order_365d")]
    assert basket.min() >= 1.0 and basket.max() <= 5.0  # 1..5 lines per order


def test_cutoff_plan_purges_training_labels_before_validation() -> None:
    first, last = (
        datetime(2010, 12, 1, 8, 26, tzinfo=UTC),
        datetime(2011, 12, 9, 12, 50, tzinfo=UTC),
    )
    train, valid = plan_cutoffs(first, last, 90)
    assert [c.date().isoformat() for c in valid] == ["2011-08-01", "2011-09-01"]
    assert [c.month for c in train] == [1, 2, 3, 4, 5]
    assert all(c + timedelta(days=90) <= valid[0] for c in train)
    custom = (datetime(2011, 6, 1, tzinfo=UTC),)
    train2, valid2 = plan_cutoffs(first, last, 30, custom)
    assert valid2 == list(custom) and train2[-1] == datetime(2011, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="runs past the last event"):
        plan_cutoffs(first, last, 90, (datetime(2011, 10, 1, tzinfo=UTC),))
    with pytest.raises(ValueError, match="no training cutoff"):
        plan_cutoffs(first, datetime(2011, 5, 1, tzinfo=UTC), 90)
    assert month_starts(at(0.5), at(31)) == [datetime(2024, 2, 1, tzinfo=UTC)]


def test_rfm_features_count_every_purchase_before_the_cutoff(events: list[Event]) -> None:
    customers = ["c0", "c1", "c2"]
    cut = int(CUT.timestamp())
    got = rfm_features(events, customers, np.array([cut] * 3))
    for row, customer in enumerate(customers):
        mine = [e for e in events if e.customer_id == customer and e.event_time < CUT]
        bought = [e for e in mine if e.type == "purchase"]
        assert got[row, 1] == len(bought)
        assert got[row, 2] == pytest.approx(sum(e.payload.amount for e in bought))
        last = max(e.event_time for e in bought) if bought else min(e.event_time for e in mine)
        assert got[row, 0] == pytest.approx((CUT - last).total_seconds() / 86400)


def test_sign_bounds_hold_and_free_fits_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 1.0 * X[:, 1])))).astype(int)
    bound = fit_linear(X, y, ["a", "b", "c"], signs=[-1, 0, 0])
    assert bound.coef[0] <= 0.0 and bound.coef[1] < -0.5  # the bound binds; b stays free
    loose = fit_linear(X, y, ["a", "b", "c"], signs=[1, -1, 0])  # bounds that do not bind
    plain = fit_linear(X, y, ["a", "b", "c"])
    np.testing.assert_allclose(loose.coef, plain.coef, atol=1e-3)
    Z = (np.clip(X, plain.lower, plain.upper) - plain.mean) / plain.scale
    reference = LogisticRegression(class_weight="balanced").fit(Z, y)
    np.testing.assert_allclose(plain.coef, reference.coef_[0], rtol=1e-6)


@pytest.fixture(scope="module")
def trained() -> object:
    events = shop(customers=400, days=420, seed=9)
    config = TransactionTrainingConfig(horizon_days=60, retention_days=400, with_boosting=True)
    return train_on_transactions(events, config, source={"source": "test"}), events


def test_training_on_transactions_reports_on_the_stated_split(trained: object) -> None:
    run, _ = trained  # type: ignore[misc]
    metrics, training = run.metrics, run.training
    assert training["label"] == "no_purchase" and training["horizon_days"] == 60
    first_valid = datetime.fromisoformat(training["valid_cutoffs"][0])
    assert all(datetime.fromisoformat(c) + timedelta(days=60) <= first_valid
               for c in training["train_cutoffs"])  # fmt: skip
    assert len(run.valid) == training["valid_rows"] == metrics["rows"]
    from sklearn.metrics import roc_auc_score

    columns = [run.valid.feature_names.index(n) for n in run.model.feature_names]
    scores = run.model.score_many(run.valid.X[:, columns])
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(run.valid.y, scores), abs=1e-6)
    assert metrics["roc_auc"] > 0.6  # the simulated shop has real signal
    for key in ("baseline", "boosting"):
        assert 0.5 < metrics[key]["roc_auc"] <= 1.0
    assert set(metrics["roc_auc_by_cutoff"]) == {c[:10] for c in training["valid_cutoffs"]}
    c = metrics["confusion"]
    assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == metrics["rows"]
    assert list(run.reference.columns) == [*run.model.feature_names, "score"]
    for name, coef in zip(run.model.feature_names, run.model.coef, strict=True):
        assert coef * silence_direction(name) >= 0.0  # the sign bounds of the silence rule


def test_silence_never_lowers_risk(trained: object) -> None:
    run, events = trained  # type: ignore[misc]
    now = events[-1].event_time + timedelta(seconds=1)
    aggs: dict[str, CustomerAggregates] = {}
    for e in events:
        aggs.setdefault(e.customer_id, CustomerAggregates(e.customer_id)).apply(e, 400)
    # customers whose whole history fits in the year windows, so no purchase leaves them
    young = [a for a in aggs.values() if a.first_seen > now.timestamp() - 200 * 86400]
    assert len(young) > 50
    t = int(now.timestamp())
    previous = run.model.score_many(feature_matrix(young, t, run.model.feature_names))
    for days in (1, 3, 10, 30, 90, 150):
        scores = run.model.score_many(
            feature_matrix(young, t + days * 86400, run.model.feature_names)
        )
        assert (scores >= previous - 1e-12).all(), f"risk fell for someone after {days} silent days"
        previous = scores
