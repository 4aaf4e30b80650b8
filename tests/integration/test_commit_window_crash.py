"""A crash in the commit window: after the worker has made a batch's dead letters and band
changes and appended its events to the archive, but before its Redis commit.

The crash is made deterministic with Redis itself: once the worker has taken its
partitions over (which writes their owner tokens), ``CLIENT PAUSE ... WRITE`` lets every
read through (fences, customers, the champion) and holds every write; then the events are
sent, and the worker runs its first batch up to the commit and waits there. The test sees the batch's events in the
archive while the fences have not moved and nothing is published yet (the records travel
in the commit, through the partitions' outboxes), SIGKILLs the worker, lets Redis go, and
starts a new worker. Then Redis must equal the offline computation and both output
topics, read to their end offsets, must hold each record once. (A crash after the commit
and before the records are published is covered in ``test_outbox.py``.)

Uses a Redis server of its own (pausing writes on a shared one would stall other users)
and the session's Kafka broker.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from core.archive import EventArchive
from core.events import Event, encode_event
from core.kafka_client import client_config, ensure_topics, input_end_offsets
from core.keys import Keys
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from tests.conftest import Services
from tests.integration.test_batch_processor import malformed_cases
from tests.integration.test_worker import offline_state, online_state, produce
from tests.support import isolated_settings, own_redis_server
from tests.support_kafka import band_changes, dead_letters, read_to_end
from tests.support_worker import WorkerProcess, promote_recency_model, wait_drained

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=8)


@dataclass
class Crashed:
    """What the scenario sent, and the settings of the worker that crashed and restarted."""

    settings: Settings
    events: list[Event]
    customers: list[str]
    malformed: list[bytes]


@pytest.fixture(scope="module")
def crashed(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashed]:
    """Run the scenario once (see the module docstring) for the tests below."""
    home = tmp_path_factory.mktemp("commit-window")
    with own_redis_server(home / "redis") as server:
        settings = isolated_settings(
            services.kafka_bootstrap_servers,
            f"redis://{server.address}/0",
            "t" + uuid.uuid4().hex[:10],
            home,
            worker_engine="batch",
            batch_size=100_000,  # a batch takes all that came within the window
            batch_within_ms=1_500,
            rescore_after_seconds=3_600,  # no re-scoring: every record comes from events
        )
        yield crash_in_the_commit_window(settings, home)


def crash_in_the_commit_window(settings: Settings, home: Path) -> Crashed:
    client = connect_redis(settings)
    promote_recency_model(settings)
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    events = list(simulate(SimulationConfig(customers=20, days=7, seed=61, start=START)))
    customers = sorted({e.customer_id for e in events})
    like = msgspec.structs.replace(
        next(e for e in events if e.topic_kind == "activity"), event_id="keyed-elsewhere"
    )
    purchase = next(e for e in events if e.type == "purchase")
    malformed = malformed_cases(encode_event(purchase), encode_event(like))
    keys = Keys.of(settings)
    store = FeatureStore(client, keys)
    partitions = sorted(input_end_offsets(settings))
    archive = EventArchive(settings.archive_dir)
    worker = WorkerProcess(settings, home / "worker.log")
    store.load_scripts()  # the pause below holds SCRIPT LOAD too, not only the writes
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while not all(client.exists(keys.owner(p)) for p in range(keys.partitions)):
            assert time.monotonic() < deadline, f"no take-over\n{worker.log_tail()}"
            time.sleep(0.1)
        client.execute_command("CLIENT", "PAUSE", "120000", "WRITE")
        raw = Producer(client_config(settings))
        for _, _, key, value in malformed:
            raw.produce(topics.activity, value, key)
        assert raw.flush(30) == 0
        produce(settings, events)
        while not archive.segments() or archive.frame(deduplicate=False).num_rows == 0:
            assert time.monotonic() < deadline, f"no batch reached the archive\n{worker.log_tail()}"
            time.sleep(0.1)
        # The batch is past its archive append; its commit is held, and with it the
        # batch's records: nothing may be published before the commit.
        time.sleep(1.0)
        assert set(store.read_fences(partitions).values()) == {-1}, "the commit got through"
        for isolation in ("read_committed", "read_uncommitted"):
            assert read_to_end(settings, topics.dlq, isolation=isolation) == []
            assert read_to_end(settings, topics.scores, isolation=isolation) == []
        worker.kill()
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
        worker.kill()
    assert set(store.read_fences(partitions).values()) == {-1}

    worker.start()
    try:
        wait_drained(settings)
    finally:
        worker.stop()
    return Crashed(settings, events, customers, [value for *_, value in malformed])


def test_after_a_crash_in_the_commit_window_redis_counts_each_event_once(
    crashed: Crashed,
) -> None:
    settings = crashed.settings
    assert online_state(settings, crashed.customers) == offline_state(crashed.events, settings)
    archive = EventArchive(settings.archive_dir)
    archived = archive.frame(columns=("event_id",)).column("event_id").to_pylist()
    assert sorted(archived) == sorted(e.event_id for e in crashed.events)


def test_after_a_crash_in_the_commit_window_each_output_record_is_published_once(
    crashed: Crashed,
) -> None:
    settings = crashed.settings
    topics = Topics.from_settings(settings)
    # events-dlq, read to its end: each malformed message once
    letters = dead_letters(settings, topics.dlq)
    assert Counter(letter.value for letter, _ in letters) == Counter(crashed.malformed)
    # churn-scores, read to its end: each customer's band changes once, in a chain from
    # their first score (no first score twice, no change from a band to itself)
    chains: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for change, _ in band_changes(settings, topics.scores):
        chains[change.customer_id].append((change.previous_band, change.band))
    assert sorted(chains) == crashed.customers
    for customer_id, chain in chains.items():
        assert chain[0][0] is None, (customer_id, chain)
        for (_, band), (previous, new) in itertools.pairwise(chain):
            assert previous == band != new, (customer_id, chain)
