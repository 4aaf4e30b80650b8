"""``EventProducer``: the SDK's way to put validated events on the churnstream topics.

It is an idempotent confluent-kafka producer with ``acks=all``: the broker de-duplicates
retries, and nothing counts as delivered until every in-sync replica has it. Each event is
validated against the contract before it is sent (a bad one raises
:class:`~core.events.EventValidationError` naming the field, and nothing is sent), routed by
its type to ``customer-activity`` or ``customer-transactions``, and keyed by customer id so
one customer's events stay in order in one partition.

Sending is asynchronous; delivery reports are counted in :attr:`EventProducer.stats`.
``flush()`` (or leaving the ``with`` block) waits for every outstanding report.

Example::

    with EventProducer(get_settings()) as producer:
        producer.send(Play(event_id="e1", customer_id="c1", event_time=now,
                           payload=PlayPayload(duration_s=180)))
    print(producer.stats.delivered)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from core.dlq import DeadLetter
from core.events import Event, EventValidator, TopicKind, encode_event
from core.kafka_client import client_config, ensure_topics
from core.settings import Settings
from core.topics import Topics

log = logging.getLogger(__name__)

# Throughput-oriented defaults; every one can be overridden through ``extra_config``.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}

_POLL_EVERY = 2_000  # serve delivery callbacks every N sends, keeping the queue drained
_KINDS: tuple[TopicKind, ...] = ("activity", "transactions")
_MAX_ERRORS_KEPT = 20


@dataclass(frozen=True)
class ProducerStats:
    """A snapshot of counts since the producer was created.

    ``sent`` messages were handed to the client (events and dead letters), ``failed`` got a
    failed delivery report, ``in_flight`` await their report, and the rest were
    ``delivered`` (acknowledged by all in-sync replicas). While sending, ``in_flight`` is an
    upper bound (the client's queue also holds its own housekeeping events), so
    ``delivered`` is a lower bound; after :meth:`EventProducer.flush` both are exact.
    ``dead_lettered`` counts the messages sent to the dead-letter topic; ``errors`` keeps
    the first few delivery errors.
    """

    sent: int
    failed: int
    in_flight: int
    dead_lettered: int
    errors: tuple[str, ...]

    @property
    def delivered(self) -> int:
        return self.sent - self.failed - self.in_flight


class EventProducer:
    """Validates, routes and sends events; counts delivery reports. Not thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        create_topics: bool = True,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.topics = Topics.from_settings(settings)
        skew = timedelta(seconds=settings.max_future_skew_seconds)
        self._validators = {
            kind: EventValidator(settings.max_event_bytes, skew, kind)
            for kind in (None, "activity", "transactions")
        }
        self._topic_of_kind = {kind: self.topics.for_kind(kind) for kind in _KINDS}
        if create_topics:
            ensure_topics(settings)
        config = {**client_config(settings), **PRODUCER_DEFAULTS, **(extra_config or {})}
        # Only failures are reported back to Python: a message without a failure report is
        # delivered once flush() returns, so success reports would only cost time.
        config["delivery.report.only.error"] = True
        config["on_delivery"] = self._on_delivery_failure
        self._producer = Producer(config)
        self._sent = 0
        self._failed = 0
        self._dead_lettered = 0
        self._errors: list[str] = []

    @property
    def stats(self) -> ProducerStats:
        return ProducerStats(
            sent=self._sent,
            failed=self._failed,
            in_flight=min(len(self._producer), self._sent - self._failed),
            dead_lettered=self._dead_lettered,
            errors=tuple(self._errors),
        )

    # --- sending ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Validate ``event`` against the contract and send it to its topic."""
        self.send_json(encode_event(event))

    def send_json(
        self, data: bytes | str, kind: TopicKind | None = None, now: datetime | None = None
    ) -> Event:
        """Validate one JSON-encoded event and send its canonical encoding.

        With ``kind``, an event that belongs on the other input topic is rejected. ``now``
        (UTC) bounds how far in the future ``event_time`` may be; it defaults to the clock.
        Raises :class:`~core.events.EventValidationError`; returns the decoded event.
        """
        event = self._validators[kind].decode(data, now or datetime.now(UTC))
        topic = self._topic_of_kind[event.topic_kind]
        value = encode_event(event)
        key = event.customer_id.encode()
        try:  # the common case inline: this is the hot path of every producer command
            self._producer.produce(topic, value, key)
            self._sent += 1
        except BufferError:
            self._produce(topic, key, value)
        if not self._sent % _POLL_EVERY:
            self._producer.poll(0)
        return event

    def send_validated(self, event: Event) -> None:
        """Send an event that was already decoded by an :class:`EventValidator` (e.g. read
        from a file by a replay): its canonical encoding, to its topic, keyed by customer.

        It skips the second validation :meth:`send` would do; an event built in code
        rather than decoded should go through :meth:`send`.
        """
        topic = self._topic_of_kind[event.topic_kind]
        value = encode_event(event)
        key = event.customer_id.encode()
        try:
            self._producer.produce(topic, value, key)
            self._sent += 1
        except BufferError:
            self._produce(topic, key, value)

    def poll(self) -> None:
        """Serve pending delivery reports without waiting (e.g. between batches)."""
        self._producer.poll(0)

    def send_record(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send any record (e.g. a score change) with the same delivery guarantees."""
        self._produce(topic, key, value)

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Write a rejected event, with the reason in headers, to the dead-letter topic."""
        self._produce(self.topics.dlq, letter.key, letter.value, letter.headers())
        self._dead_lettered += 1

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
        self._sent += 1

    def _on_delivery_failure(self, err: KafkaError, msg: Message) -> None:
        self._failed += 1
        if len(self._errors) < _MAX_ERRORS_KEPT:
            self._errors.append(f"{msg.topic()}: {err.str()}")
        log.error(
            "delivery failed topic=%s key=%s error=%s fatal=%s",
            msg.topic(),
            (msg.key() or b"").decode(errors="replace"),
            err.str(),
            err.fatal(),
        )

    # --- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for outstanding delivery reports; return how many are still outstanding."""
        remaining: int = self._producer.flush(timeout)
        return remaining

    def close(self, timeout: float = 60.0) -> None:
        """Flush; messages still undelivered after ``timeout`` stay counted as in flight."""
        remaining = self.flush(timeout)
        if remaining:
            self._errors.append(f"{remaining} messages not delivered within {timeout:.0f}s")
            log.error("flush timed out undelivered=%d timeout_s=%.0f", remaining, timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()
