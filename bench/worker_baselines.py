"""The naive per-event baseline and the Redis memory per customer (see
:mod:`bench.worker_bench`)."""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from confluent_kafka import Consumer

from bench.worker_profiles import batch_processor_rate
from bench.worker_support import PARTITIONS_OF, day_start
from core.aggregates import COUNTERS, DAY_SECONDS
from core.events import Event, EventValidator, encode_event
from core.features import FEATURE_NAMES
from core.kafka_client import client_config
from core.keys import Keys
from core.model import BANDS, LinearModel
from core.redis_client import connect_redis
from core.settings import Settings
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate
from stream.messages import RawMessage

log = logging.getLogger("bench.worker")

# --- 4. the naive per-event baseline ----------------------------------------------------

_NAIVE_LUA = """
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HMGET', KEYS[1], {fields})
""".format(fields=", ".join(f"'{name}'" for name in COUNTERS))


def naive_increments(event: Event) -> list[Any]:
    args: list[Any] = [event.type, 1]
    payload = event.payload
    if event.type == "play":
        args += ["play_seconds", int(payload.duration_s)]  # type: ignore[attr-defined]
    elif event.type == "session_end":
        args += ["session_seconds", int(payload.duration_s)]  # type: ignore[attr-defined]
    elif event.type in ("purchase", "refund"):
        cents = round(payload.amount * 100)  # type: ignore[attr-defined]
        items = int(payload.quantity)  # type: ignore[attr-defined]
        if event.type == "purchase":
            args += ["revenue_cents", cents, "items", items]
        else:
            args += ["refund_cents", cents, "refund_items", items]
    return args


def naive_rate(
    settings: Settings, key_prefix: str, limit: int, ends: dict[PARTITIONS_OF, int]
) -> tuple[float, int]:
    """Per event: poll one message, validate, one EVALSHA round trip, one predict_proba.
    Messages at or past ``ends`` (added after the throughput run) are skipped."""
    from sklearn.linear_model import LogisticRegression

    n_features = len(FEATURE_NAMES)
    rng = np.random.default_rng(3)
    clf = LogisticRegression(max_iter=500).fit(
        rng.normal(size=(400, n_features)), rng.integers(0, 2, 400)
    )
    client = connect_redis(settings)
    script = client.register_script(_NAIVE_LUA)
    topics = Topics.from_settings(settings)
    skew = timedelta(seconds=settings.max_future_skew_seconds)
    validators = {
        topics.activity: EventValidator(settings.max_event_bytes, skew, "activity"),
        topics.transactions: EventValidator(settings.max_event_bytes, skew, "transactions"),
    }
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-naive-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.activity, topics.transactions])
    done = 0
    start = None
    deadline = time.monotonic() + 300
    now = datetime.now(UTC)
    try:
        while done < limit and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if msg.offset() >= ends[(msg.topic(), msg.partition())]:
                continue
            if start is None:
                start = time.perf_counter()  # group join and first fetch excluded
            event = validators[msg.topic()].decode(msg.value(), now)
            day = int(event.event_time.timestamp()) // DAY_SECONDS
            values = script(
                keys=[f"{key_prefix}:n:{{{event.customer_id}}}:{day}"],
                args=naive_increments(event),
            )
            row = np.zeros((1, n_features))
            row[0, : len(values)] = [int(v or 0) for v in values]
            clf.predict_proba(row)
            done += 1
    finally:
        consumer.close()
    if start is None or done < limit:
        raise RuntimeError(f"naive consumer processed only {done} of {limit}")
    return done / (time.perf_counter() - start), done


# --- 5. memory per customer -------------------------------------------------------------


def memory_per_customer(
    base_settings: Settings,
    model: LinearModel,
    customers: int = 2_000,
    days: int = 90,
    sample: int = 200,
    batch: int = 10_000,
) -> dict[str, Any]:
    """Apply ``days`` of history of ``customers`` through the BatchProcessor, then measure."""
    settings = base_settings
    topics = Topics.from_settings(settings)
    config = SimulationConfig(customers=customers, days=days, seed=13, start=day_start(days + 1))
    offsets: dict[PARTITIONS_OF, int] = defaultdict(int)
    events_of: Counter[str] = Counter()
    messages: list[RawMessage] = []
    for event in simulate(config):
        topic = topics.for_kind(event.topic_kind)
        key = event.customer_id.encode()
        partition = zlib.crc32(key) % settings.topic_partitions
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] = offset + 1
        messages.append(RawMessage(topic, partition, offset, key, encode_event(event)))
        events_of[event.customer_id] += 1
    start = time.perf_counter()
    rate, _ = batch_processor_rate(settings, messages, model, batch)
    build_seconds = time.perf_counter() - start
    client = connect_redis(settings)
    keys = Keys.of(settings)
    ids = sorted(events_of)
    chosen = [ids[i] for i in np.random.default_rng(2).choice(len(ids), sample, replace=False)]
    pipe = client.pipeline(transaction=False)
    for cid in chosen:
        pipe.memory_usage(keys.customer(cid), samples=0)
        pipe.object("encoding", keys.customer(cid))
        pipe.hgetall(keys.customer(cid))
    answers = pipe.execute()
    sizes = answers[0::3]
    encodings = Counter(e.decode() if isinstance(e, bytes) else str(e) for e in answers[1::3])
    contents = cast(list[dict[bytes, bytes]], answers[2::3])
    fields = [len(c) for c in contents]
    payload = [sum(len(k) + len(v) for k, v in c.items()) for c in contents]
    longest = [max(len(v) for v in c.values()) for c in contents]
    zsets: dict[str, dict[str, Any]] = {}
    for kind, names in (
        ("risk", [keys.risk(shard) for shard in keys.shards]),
        ("risk:<band>", [keys.risk_band(shard, b) for shard in keys.shards for b in BANDS]),
        ("scored_at", [keys.scored_at(shard) for shard in keys.shards]),
    ):
        zsets[kind] = {
            "bytes": sum(int(client.memory_usage(n, samples=0) or 0) for n in names),
            "members": sum(int(client.zcard(n)) for n in names),
            "encoding": sorted({_text(client.object("encoding", n)) for n in names}),
            "keys": len(names),
        }
    # each customer is in one risk, one risk:<band> and one scored_at set
    zset_share = sum(z["bytes"] / max(1, z["members"]) for z in zsets.values())
    hash_mean = float(np.mean(sizes))
    sampled_events = sum(events_of[c] for c in chosen)
    per_customer = hash_mean + zset_share
    return {
        "redis_bytes_per_customer": round(per_customer),
        "customer_hash_bytes_mean": round(hash_mean),
        "customer_hash_bytes_p50": round(float(np.percentile(sizes, 50))),
        "customer_hash_bytes_p90": round(float(np.percentile(sizes, 90))),
        "sorted_sets_bytes_per_customer": round(zset_share, 1),
        "sorted_sets": zsets,
        "customers": len(ids),
        "sampled_customers": sample,
        "days": days,
        "events": len(messages),
        "events_per_customer_mean": round(len(messages) / len(ids), 1),
        "sampled_events_per_customer_mean": round(sampled_events / sample, 1),
        "bytes_per_event": round(
            float(np.sum(sizes)) / sampled_events + zset_share / (sampled_events / sample), 1
        ),
        "hash_fields_per_customer_mean": round(float(np.mean(fields)), 1),
        "hash_payload_bytes_mean": round(float(np.mean(payload))),
        "hash_payload_note": "sum of field-name and value lengths: what the hash holds "
        "before Redis's per-field overhead",
        "longest_value_bytes_p50": round(float(np.percentile(longest, 50))),
        "longest_value_bytes_max": int(max(longest)),
        "hash_encodings": dict(encodings),
        "build": {
            "through": f"BatchProcessor.process, batches of {batch:,}",
            "seconds": round(build_seconds, 1),
            "eps": round(rate),
        },
        "simulation": f"{customers:,} customers x {days} days, seed 13",
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
