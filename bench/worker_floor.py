"""The floor under the worker: a bare confluent-kafka consume loop plus msgspec decoding.

``worker_floor_eps`` is what a process that only reads the input topics in batches of the
worker's batch size and decodes every message into the event's typed structure reaches on
the same input, on the same machine, in the same run. No validation beyond the schema, no
state, no Redis, no scoring: the ceiling the worker is reported against.
"""

from __future__ import annotations

import time
import uuid

import msgspec
from confluent_kafka import Consumer, KafkaError

from core.events import Event
from core.kafka_client import client_config, input_fetch_config
from core.settings import Settings
from core.topics import Topics


def floor_rate(settings: Settings, ends: dict[tuple[str, int], int], batch: int) -> float:
    """Events per second of the bare loop over the input topics up to ``ends`` (end
    offsets per partition), timed from the first message received to the last."""
    decoder = msgspec.json.Decoder(Event)
    topics = Topics.from_settings(settings)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **input_fetch_config(settings),  # as the worker reads
        }
    )
    consumer.subscribe([topics.activity, topics.transactions])
    wanted = sum(ends.values())
    done = 0
    started: float | None = None
    deadline = time.monotonic() + 600
    try:
        while done < wanted and time.monotonic() < deadline:
            messages = consumer.consume(batch, timeout=settings.batch_within_ms / 1000)
            if messages and started is None:
                started = time.perf_counter()
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(error.str())
                    continue
                if m.offset() < ends.get((m.topic(), m.partition()), 0):  # type: ignore[operator]
                    decoder.decode(m.value())  # type: ignore[arg-type]
                    done += 1
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
    if done < wanted:
        raise RuntimeError(f"floor loop read {done} of {wanted} events")
    return done / elapsed if elapsed > 0 else float("inf")
