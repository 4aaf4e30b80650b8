"""The simulator: deterministic, valid against the contract, and shaped like churn data."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
from typer.testing import CliRunner

from churnstream.commands.simulate_command import simulate_command
from core.events import EVENT_CLASSES, Event, EventValidator
from offline.simulator import (
    CustomerTruth,
    SimulationConfig,
    ground_truth,
    read_truth,
    simulate,
    write_jsonl,
    write_truth,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
SCHEMA_FILES = {
    "activity": "customer-activity.v1.schema.json",
    "transactions": "customer-transactions.v1.schema.json",
}
DAY = timedelta(days=1)

# Small configs keep the suite fast. SMALL shows every event type (checked below).
SMALL = SimulationConfig(customers=50, days=30, seed=4)
MAIN = SimulationConfig(customers=600, days=42, seed=7)
DRIFT_DAY = 18
DRIFTED = SimulationConfig(customers=300, days=28, seed=11, drift_at=DRIFT_DAY)
UNDRIFTED = SimulationConfig(customers=300, days=28, seed=11)


@cache
def jsonl(config: SimulationConfig) -> bytes:
    buffer = io.BytesIO()
    write_jsonl(simulate(config), buffer)
    return buffer.getvalue()


@cache
def decoded(config: SimulationConfig) -> tuple[Event, ...]:
    validator = EventValidator()
    now = config.end + DAY  # the validator rejects events too far after ``now``
    return tuple(validator.decode(line, now=now) for line in jsonl(config).splitlines())


def truth_by_id(config: SimulationConfig) -> dict[str, CustomerTruth]:
    return {t.customer_id: t for t in ground_truth(config)}


def day_of(config: SimulationConfig, when: datetime) -> int:
    return (when - config.start) // DAY


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_in_process_and_through_the_cli(tmp_path: Path) -> None:
    first = jsonl(SMALL)
    second = io.BytesIO()
    assert write_jsonl(simulate(SimulationConfig(customers=50, days=30, seed=4)), second) > 0
    assert second.getvalue() == first

    app = typer.Typer()
    app.command()(simulate_command)
    out = tmp_path / "events.jsonl"
    args = ["--customers", "50", "--days", "30", "--seed", "4", "--start", "2026-01-01"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == first

    expected_truth = tmp_path / "expected.csv"
    write_truth(ground_truth(SMALL), expected_truth)
    assert Path(f"{out}.truth.csv").read_bytes() == expected_truth.read_bytes()


def test_cli_writes_to_stdout_and_rejects_a_bad_start() -> None:
    app = typer.Typer()
    app.command()(simulate_command)
    config = SimulationConfig(customers=20, days=5, seed=5)
    result = CliRunner().invoke(app, ["--customers", "20", "--days", "5", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == jsonl(config)

    bad = CliRunner().invoke(app, ["--start", "next tuesday", "--out", "-"])
    assert bad.exit_code == 2


def test_a_different_seed_gives_different_events() -> None:
    other = SimulationConfig(customers=50, days=30, seed=5)
    assert jsonl(other) != jsonl(SMALL)
    assert [t.churned for t in ground_truth(other)] != [t.churned for t in ground_truth(SMALL)]


# --- the contract --------------------------------------------------------------------------


@cache
def schema_validators() -> dict[str, Any]:
    """One validator per event type, from the published schema files.

    Each topic schema is an ``anyOf`` with a ``discriminator`` on ``type``; validating an
    event against the branch its type selects is what ``anyOf`` requires, and is an order of
    magnitude faster than trying every branch.
    """
    validators = {}
    for name in SCHEMA_FILES.values():
        schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        for event_type, ref in schema["discriminator"]["mapping"].items():
            validators[event_type] = validator_class({**schema, "anyOf": [{"$ref": ref}]})
    return validators


def test_every_event_follows_the_contract_and_the_published_json_schemas() -> None:
    events = decoded(SMALL)  # EventValidator accepted every line
    assert {e.type for e in events} == set(EVENT_CLASSES)

    validators = schema_validators()
    for line in jsonl(SMALL).splitlines():
        document = json.loads(line)
        validator = validators[document["type"]]
        if not validator.is_valid(document):
            error = jsonschema.exceptions.best_match(validator.iter_errors(document))
            pytest.fail(f"{document['event_id']}: {error.message} at {list(error.path)}")

    for event in decoded(MAIN):  # the bigger data set against the code's contract too
        assert event.event_time.utcoffset() == timedelta(0)


def test_ids_are_unique_and_stable_in_form() -> None:
    events = decoded(MAIN)
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("sim7-C") for i in ids)
    assert {e.customer_id for e in events} <= set(truth_by_id(MAIN))


# --- ordering and lifecycle ----------------------------------------------------------------


def test_events_are_in_time_order_with_whole_seconds() -> None:
    times = [e.event_time for e in decoded(MAIN)]
    assert times == sorted(times)
    assert all(t.microsecond == 0 for t in times)
    assert times[0] >= MAIN.start


def test_nothing_happens_before_signup_or_after_churn() -> None:
    truths = truth_by_id(MAIN)
    last: dict[str, Event] = {}
    for event in decoded(MAIN):
        truth = truths[event.customer_id]
        assert event.event_time >= truth.signup_time
        if truth.churn_time is not None:
            assert event.event_time <= truth.churn_time, event
        last[event.customer_id] = event
    for cid, truth in truths.items():
        if truth.cancelled:
            assert last[cid].type == "cancellation"
            assert last[cid].event_time == truth.churn_time
        elif cid in last:
            assert last[cid].type != "cancellation"


def test_sessions_are_well_formed() -> None:
    open_session: dict[str, str] = {}
    for event in decoded(MAIN):
        cid, session = event.customer_id, getattr(event.payload, "session_id", None)
        if event.type == "session_start":
            assert cid not in open_session, "sessions of one customer must not overlap"
            open_session[cid] = session
        elif event.type == "session_end":
            assert open_session.pop(cid) == session
        elif session is not None:
            assert open_session.get(cid) == session, event
    assert not open_session


# --- churn ---------------------------------------------------------------------------------


def test_churn_rate_is_plausible_and_matches_the_probabilities() -> None:
    truths = ground_truth(SimulationConfig())  # defaults: 1000 customers, 60 days
    rate = sum(t.churned for t in truths) / len(truths)
    mean_probability = sum(t.churn_probability for t in truths) / len(truths)
    assert 0.18 <= rate <= 0.32
    assert abs(rate - mean_probability) < 0.04
    churners = [t for t in truths if t.churned]
    assert 0.6 < sum(t.cancelled for t in churners) / len(churners) < 0.95
    assert all(t.churn_time is not None and t.decline_start is not None for t in churners)

    longer = ground_truth(SimulationConfig(days=90))
    assert rate < sum(t.churned for t in longer) / len(longer) <= 0.42


def test_churners_fade_in_their_last_two_weeks() -> None:
    truths = truth_by_id(MAIN)
    per_day: dict[str, Counter[int]] = defaultdict(Counter)
    unhappy: dict[str, Counter[int]] = defaultdict(Counter)
    for event in decoded(MAIN):
        day = day_of(MAIN, event.event_time)
        per_day[event.customer_id][day] += 1
        if event.type in ("dislike", "help", "error"):
            unhappy[event.customer_id][day] += 1

    recent = earlier = recent_unhappy = earlier_unhappy = 0.0
    churners = 0
    for cid, truth in truths.items():
        if truth.churn_time is None or day_of(MAIN, truth.signup_time) >= -1:
            continue
        churn_day = day_of(MAIN, truth.churn_time)
        if churn_day < 28:
            continue
        churners += 1
        recent += sum(per_day[cid][d] for d in range(churn_day - 14, churn_day)) / 14
        earlier += sum(per_day[cid][d] for d in range(churn_day - 28, churn_day - 14)) / 14
        recent_unhappy += sum(unhappy[cid][d] for d in range(churn_day - 14, churn_day))
        earlier_unhappy += sum(unhappy[cid][d] for d in range(churn_day - 28, churn_day - 14))
    assert churners >= 10
    assert recent < 0.7 * earlier  # fewer events per day just before churning
    # ... and, among what they still do, more dislikes, help and error pages
    assert recent_unhappy / recent > earlier_unhappy / earlier

    steady = [c for c, t in truths.items() if not t.churned and day_of(MAIN, t.signup_time) < 0]
    last = sum(per_day[c][d] for c in steady for d in range(28, 42))
    before = sum(per_day[c][d] for c in steady for d in range(14, 28))
    assert 0.85 < last / before < 1.15  # customers who stay do not fade


# --- drift ---------------------------------------------------------------------------------


def daily_rates(config: SimulationConfig, event_type: str) -> list[float]:
    """Events of ``event_type`` per day per customer alive that day."""
    counts = Counter(day_of(config, e.event_time) for e in decoded(config) if e.type == event_type)
    truths = ground_truth(config)
    rates = []
    for day in range(config.days):
        day_start = config.start + day * DAY
        alive = sum(
            t.signup_time < day_start + DAY and (t.churn_time is None or t.churn_time > day_start)
            for t in truths
        )
        rates.append(counts[day] / alive)
    return rates


def window(rates: list[float], first: int) -> float:
    return sum(rates[first : first + 7]) / 7  # one week, so each window has one weekend


def test_drift_changes_plays_and_errors_from_the_drift_day_only() -> None:
    plays, errors = daily_rates(DRIFTED, "play"), daily_rates(DRIFTED, "error")
    week_a, week_b, week_c = 4, 11, DRIFT_DAY + 2
    # before the drift, two weeks look alike
    assert 0.85 < window(plays, week_b) / window(plays, week_a) < 1.15
    assert 0.6 < window(errors, week_b) / window(errors, week_a) < 1.6
    # after it, far fewer plays and far more errors
    assert window(plays, week_c) / window(plays, week_b) < 0.75
    assert window(errors, week_c) / window(errors, week_b) > 2.0


def test_drift_leaves_the_days_before_it_untouched() -> None:
    cutoff = (DRIFTED.start + DRIFT_DAY * DAY).strftime("%Y-%m-%dT%H:%M:%S").encode()

    def before_drift(config: SimulationConfig) -> list[bytes]:
        lines = jsonl(config).splitlines()
        return [line for line in lines if line.split(b'"event_time":"')[1][:19] < cutoff]

    assert before_drift(DRIFTED) == before_drift(UNDRIFTED)
    assert jsonl(DRIFTED) != jsonl(UNDRIFTED)
    drift_churners = [t for t in ground_truth(DRIFTED) if t.churn_cause == "drift"]
    assert drift_churners
    assert all(day_of(DRIFTED, t.churn_time) >= DRIFT_DAY for t in drift_churners)  # type: ignore[arg-type]


# --- truth file ----------------------------------------------------------------------------


def test_truth_file_round_trips(tmp_path: Path) -> None:
    truths = ground_truth(SMALL)
    path = tmp_path / "truth.csv"
    assert write_truth(truths, path) == len(truths)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("customer_id,churn_probability,churned,churn_time")
    back = read_truth(path)
    assert [t.customer_id for t in back] == [t.customer_id for t in truths]
    assert [t.churned for t in back] == [t.churned for t in truths]
    assert [t.churn_time for t in back] == [t.churn_time for t in truths]
    assert [t.signup_time for t in back] == [t.signup_time for t in truths]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="drift_at"):
        SimulationConfig(days=10, drift_at=10)
    with pytest.raises(ValueError, match="time-zone"):
        SimulationConfig(start=datetime(2026, 1, 1))


def test_odd_configs_work() -> None:
    tiny = SimulationConfig(customers=1, days=1, seed=1, drift_at=0)
    assert all(e.customer_id == "C00001" for e in simulate(tiny))
    offset_start = SimulationConfig(
        customers=30, days=3, start=datetime.fromisoformat("2026-01-01T13:30:00+02:00")
    )
    events = list(simulate(offset_start))
    assert offset_start.start.isoformat() == "2026-01-01T11:30:00+00:00"
    assert events and events[0].event_time >= offset_start.start
