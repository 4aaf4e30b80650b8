"""Publishing the outbox (:mod:`core.outbox`) to Kafka: one transaction per partition.

After a batch's Redis commit has put a partition's dead letters and band changes in that
partition's outbox, the partition's own transactional producer publishes them::

    begin_transaction()
    produce(...) for every record of the entries not yet delivered
    send_offsets_to_transaction([<activity topic>[p] @ last seq + 1], <outbox group>)
    commit_transaction()

The offset committed for the **outbox consumer group** (:func:`outbox_group`, never
subscribed) on partition ``p`` of the activity topic (a topic with one partition per
outbox) is not a read position: it is the **delivered marker**, the next sequence number
to publish. Kafka stores it as given, and it commits atomically with the records, so
readers with ``isolation.level=read_committed`` (librdkafka's default) see every entry
exactly once, or not yet.

**Taking a partition over** (on assignment, and again after any delivery failure): a new
producer with the partition's ``transactional.id`` (:func:`transactional_id`), whose
``init_transactions()`` fences every earlier producer of that id (a crashed or stale
owner) and aborts its open transaction; then a fresh owner token is written
(:func:`core.outbox.claim_partition`), so no earlier owner's commit of the partition is
accepted any more; then the marker is read, the outbox entries at or above it are read
from Redis and published in one transaction. So records a previous owner committed to
Redis but had not (or not completely) published are published once by the new owner,
and those of a stale owner whose transaction was aborted are not seen.

**Failures.** Any Kafka error during a take-over or a delivery drops the partition's
producer (its open transaction, if any, is aborted by the next ``init_transactions``) and
raises; the records stay in the outbox. :meth:`stream.batch.BatchProcessor.process`
retries with backoff, and the retry takes the partition over again first. A stopping
worker gives up instead (the next owner publishes them).

**Cost.** Per batch, only partitions whose outbox got an entry: about five round trips
to the broker each (adding the partitions to the transaction, the produce request with
``acks=all``, adding the offsets, the offset commit to the group coordinator, ending the
transaction), a few milliseconds on a local broker. Partitions are delivered
concurrently from a small thread pool (librdkafka releases the GIL while it waits).
:meth:`OutboxDelivery.deliver` waits for them; :meth:`OutboxDelivery.deliver_behind`
queues them and returns at once, so the worker decodes, applies and scores its next
batches while they are published (those records are already safe in Redis). A partition
has one publication running at a time, and the entries queued meanwhile go out together
in its next transaction: when batches come faster than the broker ends transactions,
they share them instead of waiting for them, and the broker sees at most one
transaction per partition per round of transaction calls. A failure is raised to the
next batch before its commit (:meth:`OutboxDelivery.raise_failures`), which takes the
partition over again. The records are taken from memory; Redis is read only at a
take-over, or when an entry was committed but not delivered by this process (a gap in
the sequence numbers). A take-over costs the producer's ``init_transactions`` (a few
round trips), the marker fetch and one ``ZRANGEBYSCORE``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from core.kafka_client import client_config
from core.keys import Keys
from core.outbox import OutboxEntry, OutboxRecord, claim_partition, read_entries
from core.redis_client import REDIS_ERRORS
from core.settings import Settings
from core.topics import Topics

log = logging.getLogger(__name__)

_TIMEOUT_SECONDS = 15.0  # longest a transaction call waits for the broker
# Longest a take-over or a publication may take, all calls included. librdkafka does not
# always honour a call's timeout (a transactional call was seen to hang after a broker
# restart): past this the partition is dropped and taken over again by a new producer,
# which fences the stuck one; the stuck thread is left behind.
_WATCHDOG_SECONDS = 45.0
_MAX_THREADS = 8
# Longest dropping a partition (a revocation) waits for publications still running.
_DROP_WAIT_SECONDS = 5.0


def transactional_id(settings: Settings, partition: int) -> str:
    """The ``transactional.id`` of partition ``partition``'s outbox producer.

    >>> transactional_id(Settings(consumer_group="workers"), 3)
    'workers-outbox-3'
    """
    return f"{settings.consumer_group}-outbox-{partition}"


def outbox_group(settings: Settings) -> str:
    """The consumer group whose committed offsets are the delivered markers.

    >>> outbox_group(Settings(consumer_group="workers"))
    'workers-outbox'
    """
    return f"{settings.consumer_group}-outbox"


@dataclass
class _Owned:
    """A partition this process publishes: its producer, the next sequence number to
    publish (every entry below it is in Kafka), the committed entries waiting for the
    running publication (``queued``) and that publication (``running``)."""

    producer: Producer
    next_seq: int
    owner: bytes  # the owner token its take-over wrote (core.outbox.claim_partition)
    queued: list[OutboxEntry] = field(default_factory=list)
    running: Future[None] | None = None
    committed_through: int = 0  # the newest entry handed to deliver_behind
    publishing_since: float | None = None  # monotonic start of the transaction under way

    def waiting(self) -> int:
        """Entries committed to the outbox by this process and not published yet."""
        return max(self.committed_through + 1 - self.next_seq, 0)


class OutboxDelivery:
    """Publishes the outboxes of the partitions this process took over. Thread-safe for
    distinct partitions; one caller at a time (the batch loop)."""

    def __init__(self, settings: Settings, client: redis.Redis, keys: Keys) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.marker_topic = Topics.from_settings(settings).activity
        self._owned: dict[int, _Owned] = {}
        self._generation: dict[int, int] = {}  # bumped by drop(): late threads see it
        self._markers: Consumer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # guards each _Owned's queued and running
        # Publications behind the batches that failed (partition, error), not yet raised.
        self._failures: list[tuple[int, BaseException]] = []
        # Entries a failed publication left unpublished, by partition, until taken over.
        self._left: dict[int, int] = {}
        # The owner token this process last wrote per partition, kept when the partition
        # is dropped (a failure) and forgotten when it is revoked: see taken_over().
        self._claimed: dict[int, bytes] = {}

    # --- ownership ------------------------------------------------------------------------

    def ready(self, partition: int) -> bool:
        """Whether ``partition`` was taken over (and not dropped since)."""
        return partition in self._owned

    def delivered_below(self, partition: int) -> int:
        """The sequence number below which ``partition``'s entries are in Kafka."""
        return self._owned[partition].next_seq

    def owner_token(self, partition: int) -> bytes:
        """The owner token this process holds for ``partition`` (its commits carry it)."""
        return self._owned[partition].owner

    def take_over(self, partitions: Iterable[int]) -> None:
        """Take ``partitions`` over (module docstring): fence their earlier producers,
        then publish what their outboxes hold beyond the delivered markers. Raises
        ``KafkaException`` (or a Redis error) when one failed; the others are taken."""
        todo = sorted(set(partitions))
        self.drop(todo)
        self._marker_reader()  # created once, before the threads use it
        futures = {p: self._submit(self._take_over, p) for p in todo}
        _, stuck = wait(list(futures.values()), timeout=_WATCHDOG_SECONDS)
        if stuck:
            self._give_up(sorted(p for p, f in futures.items() if f in stuck), _WATCHDOG_SECONDS)
        for future in futures.values():
            error = future.exception()
            if error is not None:
                raise error

    def drop(self, partitions: Iterable[int]) -> None:
        """Stop publishing ``partitions`` (revoked, or in doubt after a failure): their
        producers are closed; :meth:`take_over` must run before they publish again.
        Publications still running are waited for first, up to ``_DROP_WAIT_SECONDS`` (a
        failure among them is logged: its partition is dropped, and its records stay in
        the outbox for the next owner)."""
        if self.publishing or self._failures:
            try:
                self.settle(_DROP_WAIT_SECONDS)
            except (KafkaException, *REDIS_ERRORS, OSError) as exc:  # type: ignore[misc]
                log.warning("an outbox publication failed; left in the outbox error=%r", exc)
        self._drop(partitions)

    def forget(self, partitions: Iterable[int]) -> None:
        """``partitions`` are no longer this process's (revoked): drop them, and stop
        counting what a failed publication left in their outboxes (their next owner
        publishes it)."""
        partitions = set(partitions)
        self.drop(partitions)
        with self._lock:
            for partition in partitions:
                self._left.pop(partition, None)
                self._claimed.pop(partition, None)

    def taken_over(self, partitions: Iterable[int]) -> set[int]:
        """Those of ``partitions`` that this process took over and another process took
        over since (the owner token in Redis is no longer the one this process wrote),
        whether this process noticed (a refused commit, a fenced publication) or not.
        One ``GET`` per partition this process took over."""
        with self._lock:
            mine = {p: self._claimed[p] for p in set(partitions) if p in self._claimed}
        held = {p: self.redis.get(self.keys.owner(p)) for p in sorted(mine)}
        return {p for p, token in mine.items() if held[p] != token}

    def _drop(self, partitions: Iterable[int]) -> None:
        for partition in set(partitions):
            with self._lock:  # pool threads drop and add partitions too
                self._generation[partition] = self._generation.get(partition, 0) + 1
                owned = self._owned.pop(partition, None)
            if owned is not None:
                _close(owned.producer)

    def close(self, timeout: float = _DROP_WAIT_SECONDS) -> None:
        """Give publications still running up to ``timeout`` seconds (what they do not
        publish stays in the outbox for the partitions' next owner), then let go."""
        try:
            self.settle(timeout)
        except (KafkaException, *REDIS_ERRORS, OSError) as exc:  # type: ignore[misc]
            log.warning("closing with records left in the outbox error=%r", exc)
        self._drop(list(self._owned))
        if self._markers is not None:
            self._markers.close()
            self._markers = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # --- publishing -----------------------------------------------------------------------

    def deliver(self, appended: Mapping[int, tuple[int, Sequence[OutboxRecord]]]) -> None:
        """Publish the entries a commit just appended (partition -> (sequence number,
        records)), and wait until they are published. A partition not taken over is left
        for its take-over. Raises ``KafkaException`` when one failed (module docstring)."""
        self.deliver_behind(appended)
        self.settle()

    def deliver_behind(self, appended: Mapping[int, tuple[int, Sequence[OutboxRecord]]]) -> None:
        """Queue the entries a commit just appended for publication, and return at once.

        Each partition has at most one publication running; entries queued meanwhile go
        out together in its next transaction, so however fast batches come, a partition
        costs the broker one transaction per round trip of the last one, not one per
        batch. Then raises the failure of an earlier publication, if any (see
        :meth:`raise_failures`): these entries are queued all the same (those of a
        partition dropped by that failure wait for its take-over)."""
        for partition, (seq, records) in sorted(appended.items()):
            owned = self._owned.get(partition)
            if owned is None:
                continue
            with self._lock:
                owned.queued.append(OutboxEntry(seq, list(records)))
                owned.committed_through = max(owned.committed_through, seq)
                if owned.running is None:
                    owned.running = self._submit(self._drain, partition, owned)
        self.raise_failures()

    def raise_failures(self) -> None:
        """Raise the first failure of a publication behind the batches since the last
        call (its partition was dropped: it must be taken over again, which publishes
        what it left in the outbox). A publication stuck for longer than
        ``_WATCHDOG_SECONDS`` counts as failed (see :meth:`give_up_stalled`)."""
        self.give_up_stalled()
        if self._failures:
            with self._lock:
                failures, self._failures = self._failures, []
            error = failures[0][1]
            log.warning(
                "outbox publication failed; taken over again partitions=%s error=%r",
                ",".join(str(p) for p, _ in failures),
                error,
            )
            raise error

    def give_up_stalled(self) -> None:
        """Drop the partitions whose transaction has been under way for longer than
        ``_WATCHDOG_SECONDS`` and raise ``KafkaException`` (as :meth:`settle` does past
        its timeout): librdkafka does not always honour a transactional call's timeout
        (one was seen to hang after a broker restart), and a publication behind the
        batches is otherwise only waited for when partitions move or the worker stops.
        The partitions are taken over again by a new producer, which fences the stuck
        one and publishes what it left in the outbox."""
        now = time.monotonic()
        with self._lock:
            stalled = sorted(
                p
                for p, o in self._owned.items()
                if o.publishing_since is not None and now - o.publishing_since > _WATCHDOG_SECONDS
            )
        if stalled:
            self._give_up(stalled, _WATCHDOG_SECONDS)

    def settle(self, timeout: float = _WATCHDOG_SECONDS) -> None:
        """Wait until every queued entry is published; raise the first failure. Past
        ``timeout`` the partitions still publishing are dropped (taken over again
        later) and ``KafkaException`` is raised."""
        deadline = time.monotonic() + timeout
        before: dict[int, Future[None]] = {}
        while True:
            with self._lock:
                running = {p: o.running for p, o in self._owned.items() if o.running}
            if not running or running == before:  # a finished drain clears its own
                break
            before = running
            _, stuck = wait(list(running.values()), timeout=max(deadline - time.monotonic(), 0))
            if stuck:
                self._give_up(sorted(p for p, f in running.items() if f in stuck), timeout)
        self.raise_failures()

    def waiting_entries(self) -> int:
        """Outbox entries this process committed and has not published yet: queued or in
        flight, or left by a failed publication until the partition is taken over again
        (the ``churn_worker_outbox_waiting_entries`` gauge). Each entry holds one batch's
        records of one partition. A value that keeps growing means publication is stuck."""
        with self._lock:
            return sum(o.waiting() for o in self._owned.values()) + sum(self._left.values())

    @property
    def publishing(self) -> bool:
        """Whether entries are queued or being published."""
        return any(owned.running is not None for owned in list(self._owned.values()))

    def _drain(self, partition: int, owned: _Owned) -> None:
        """Publish ``partition``'s queued entries, one transaction for all that are queued
        each time, until none is left (in the pool: one drain per partition at a time)."""
        while True:
            with self._lock:
                queued, owned.queued = owned.queued, []
                if not queued:
                    owned.running = None
                    return
            try:
                entries = [e for e in queued if e.seq >= owned.next_seq]
                if entries and entries[0].seq != owned.next_seq:
                    # entries committed but not queued by this process: read them all
                    entries = read_entries(self.redis, self.keys, partition, owned.next_seq)
                if entries:
                    owned.publishing_since = time.monotonic()
                    try:
                        self._publish(partition, owned, entries)
                    finally:
                        owned.publishing_since = None
            except BaseException as exc:
                with self._lock:
                    owned.queued, owned.running = [], None
                    self._failures.append((partition, exc))
                    self._left[partition] = owned.waiting()
                self._drop([partition])  # the take-over reads what is left from Redis
                return

    def _take_over(self, partition: int) -> None:
        generation = self._generation.get(partition, 0)
        producer = Producer(
            {
                **client_config(self.settings),
                "transactional.id": transactional_id(self.settings, partition),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "compression.type": "lz4",
            }
        )
        try:
            producer.init_transactions(_TIMEOUT_SECONDS)
            # From here no earlier owner publishes, and after the claim none commits
            # either: the entries read next are all there will be of theirs.
            owner = claim_partition(self.redis, self.keys, partition)
            with self._lock:
                self._claimed[partition] = owner
            marker = self._marker(partition)
            owned = _Owned(producer, marker, owner)
            entries = read_entries(self.redis, self.keys, partition, marker)
            if entries:
                self._publish(partition, owned, entries)
        except BaseException:
            _close(producer)
            raise
        with self._lock:
            current = self._generation.get(partition, 0) == generation
            if current:
                self._owned[partition] = owned
                self._left.pop(partition, None)  # published, or no longer ours
        if not current:  # given up on meanwhile
            _close(producer)
            return
        log.info(
            "outbox taken over partition=%d next_seq=%d published_entries=%d",
            partition,
            owned.next_seq,
            len(entries),
        )

    def _publish(self, partition: int, owned: _Owned, entries: Sequence[OutboxEntry]) -> None:
        producer = owned.producer
        producer.begin_transaction()
        for entry in entries:
            for record in entry.records:
                _produce(producer, record)
        last = entries[-1].seq
        marker = TopicPartition(self.marker_topic, partition, last + 1)
        producer.send_offsets_to_transaction(
            [marker], self._marker_reader().consumer_group_metadata(), _TIMEOUT_SECONDS
        )
        producer.commit_transaction(_TIMEOUT_SECONDS)
        owned.next_seq = last + 1

    def _marker(self, partition: int) -> int:
        """The delivered marker of ``partition`` (1, the first sequence number, when
        nothing was ever published)."""
        [committed] = self._marker_reader().committed(
            [TopicPartition(self.marker_topic, partition)], _TIMEOUT_SECONDS
        )
        if committed.error is not None:
            raise KafkaException(committed.error)
        return max(committed.offset, 1)

    def _marker_reader(self) -> Consumer:
        if self._markers is None:
            self._markers = Consumer(
                {
                    **client_config(self.settings),
                    "group.id": outbox_group(self.settings),
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",  # markers of committed txns only
                }
            )
        return self._markers

    def _submit(self, step: Callable[..., None], *args: Any) -> Future[None]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="outbox")
        return self._pool.submit(step, *args)

    def _give_up(self, partitions: Sequence[int], waited: float) -> None:
        """Drop ``partitions``, whose take-over or publication is stuck (see
        ``_WATCHDOG_SECONDS``), leave their threads behind and raise."""
        log.error(
            "outbox publication stuck; partitions dropped, to be taken over again "
            "partitions=%s waited_s=%.0f",
            ",".join(map(str, partitions)),
            waited,
        )
        with self._lock:
            for partition in partitions:
                owned = self._owned.get(partition)
                if owned is not None:
                    owned.queued, owned.running = [], None
        self._drop(partitions)
        if self._pool is not None:
            self._pool.shutdown(wait=False)  # its stuck threads are left behind
            self._pool = None
        raise KafkaException(f"outbox publication stuck for partitions {list(partitions)}")


def _produce(producer: Producer, record: OutboxRecord) -> None:
    while True:
        try:
            headers = cast(list[tuple[str, str | bytes | None]] | None, record.headers)
            producer.produce(record.topic, record.value, record.key, headers=headers)
            return
        except BufferError:  # local queue full: let it drain, then retry
            producer.poll(0.05)


def _close(producer: Producer) -> None:
    """Let ``producer`` go without waiting on a broker that may be gone: records not yet
    sent are dropped (they stay in the outbox), and a transaction left open is aborted by
    the next owner's ``init_transactions`` (or the broker's transaction timeout)."""
    try:
        producer.purge()
    except KafkaException as exc:
        log.debug("closing an outbox producer error=%r", exc)
