"""Applying one micro-batch of raw Kafka messages: the worker's whole job, as a plain class.

For each batch: skip messages at or below their partition's fence (already applied);
validate the rest (invalid ones become dead letters); apply valid events to the
customers' aggregates, held in memory per partition and loaded from Redis on first
touch; score every touched customer in one vectorised call; append the applied events to
the event archive (``core.archive``); then commit aggregates, scores, the new fences and
the batch's output records (dead letters, band changes: the partitions' outboxes,
:mod:`core.outbox`) to Redis in one transaction; then publish those records to Kafka in
one transaction per partition (:mod:`stream.delivery`), either before returning or, with
``publish_behind``, while the next batches are decoded, applied and scored (the records
are safe in the outbox once committed; a failed publication is seen by the next batch
before its commit). Failures are retried with backoff inside
:meth:`BatchProcessor.process`, which returns only once the batch is applied — so the
caller may acknowledge it — or, with ``commit_behind``, once its commit is sent: Redis
runs it while the next batch is decoded, applied and scored
(:mod:`stream.commit_behind`), and the next batch waits for it before its own commit; if
it failed, the next batch applies it again first. A crash at any point leaves
Redis at the previous fences (the batch is applied again, once, after restart, and makes
its records again) or at the new ones with the records in the outbox (the partition's
next owner publishes them). Either way each record is published once. If Redis itself
loses committed writes (its fences go back), the batch is refused with
:class:`FencesWentBack` so the caller reads those partitions again from the fences Redis
holds, instead of skipping what was lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import KafkaException

from core import metrics
from core.aggregates import DAY_SECONDS, CustomerAggregates
from core.archive import ArchivedEvent, SegmentLog
from core.customer_encoding import StoredCustomer
from core.dlq import DeadLetter
from core.events import Event
from core.model import Scorer
from core.outbox import (
    OutboxAppend,
    OutboxRecord,
    band_change_record,
    dead_letter_record,
    encode_records,
)
from core.producer import EventProducer
from core.redis_client import REDIS_ERRORS
from core.scores import BandChange, Score
from core.settings import Settings, scoring_clock
from core.store import FeatureStore, FenceMoved
from core.topics import Topics
from stream.commit_behind import CommitFailed, CommitStillRunning, PendingCommit
from stream.delivery import OutboxDelivery
from stream.messages import (
    RawMessage,
    count_codes,
    decode_messages,
    too_late_letter,
    validators,
)
from stream.scoring import score_customers, valuation_of

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
ModelSource = Callable[[], Scorer | None]


class FencesWentBack(RuntimeError):
    """Redis holds older fences than this worker committed: it lost committed writes (a
    failover to a replica that lagged, a restore from a backup, the fsync window of a power
    cut). Nothing of the batch was written; the caller must read every partition in
    ``fences`` again from ``fence + 1`` (``fences``: the fences Redis holds now)."""

    def __init__(self, fences: dict[TopicPartition, int]) -> None:
        self.fences = fences
        where = ", ".join(f"{t}[{p}]@{f}" for (t, p), f in sorted(fences.items()))
        super().__init__(f"offset fences went back in Redis; read again after {where}")


class PartitionsTakenOver(RuntimeError):
    """Another worker took over partitions of this batch since this one did (their owner
    token in Redis is not the one this worker wrote: :func:`core.outbox.claim_partition`),
    most likely in a rebalance this worker has not heard of yet. The batch failed (a
    refused commit, a fenced publication); the worker forgot those partitions (state,
    fences, outboxes) and dropped the state of the batch's other partitions. The caller
    must not acknowledge the batch, and must read every partition in ``fences`` again from
    ``fence + 1`` (``fences``: what Redis holds now) once it has heard from the group: if
    they are still its own, their next batch takes them over again."""

    def __init__(self, fences: dict[TopicPartition, int]) -> None:
        self.fences = fences
        where = ", ".join(f"{t}[{p}]" for t, p in sorted(fences))
        super().__init__(f"partitions taken over by another worker: {where}")


class BatchAbandoned(RuntimeError):
    """The worker is stopping while a batch still fails (Kafka or Redis unreachable):
    nothing of it was committed, so it must not be acknowledged; it is applied again after
    a restart."""


_BACKOFF_START, _BACKOFF_MAX = 0.1, 5.0
_COMMIT_WAIT_SECONDS = 5.0  # for the last batch's commit, when partitions move or on close


@dataclass
class BatchReport:
    """What one batch did (for logs, metrics and tests)."""

    messages: int = 0
    fenced: int = 0
    applied: int = 0
    duplicates: int = 0
    expired: int = 0
    too_late: int = 0
    dead_letters: int = 0
    scored: int = 0
    band_changes: int = 0
    retries: int = 0
    newest_event_time: int | None = None
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pending:
    """A batch whose commit is running (``commit_behind``) and what follows it."""

    commit: PendingCommit[dict[int, int]]
    new_fences: dict[TopicPartition, tuple[int, int]]
    records: dict[int, list[OutboxRecord]]


class BatchProcessor:
    """Owns the in-memory state of the partitions a worker is assigned."""

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        producer: EventProducer | None,
        model: ModelSource,
        clock: Callable[[], float] = time.time,
        archive: SegmentLog | None = None,
        score_clock: Callable[[], float] | None = None,
        stopping: threading.Event | None = None,
        delivery: OutboxDelivery | None = None,
        publish_behind: bool = False,
        commit_behind: bool = False,
        commit_behind_from: int = 1,
        yield_taken_over: bool = False,
    ) -> None:
        """``clock`` is the wall clock (event validation, lag); ``score_clock`` the time
        features are evaluated at (default: ``CHURN_AS_OF`` when set, else ``clock``).
        ``archive`` defaults to a segment log under ``settings.archive_dir`` when
        ``settings.archive_enabled``. ``stopping``, once set, makes a failing batch give
        up instead of retrying (see :meth:`process`). ``delivery`` publishes the outboxes
        (default: one for ``settings`` and ``store``, created on first use). ``producer``
        is not used by batches (their records go through the outbox); it is accepted for
        callers that still pass one. ``publish_behind``: :meth:`process` returns once the
        batch is committed, and its records are published while the next batch is
        worked on (see :meth:`process`); by default it returns once they are published.
        ``commit_behind``: :meth:`process` returns once the batch's commit is sent, and the
        next batch is decoded, applied and scored while Redis runs it (see :meth:`process`).
        Only for a caller that reads each partition from its fence after every assignment
        and acknowledges nothing to Kafka that the fences do not hold (the batch engine).
        ``commit_behind_from``: only batches of at least this many messages commit behind;
        smaller ones (a worker keeping up) commit before :meth:`process` returns, so their
        scores are in Redis at once. ``yield_taken_over``: a batch refused because another
        worker took one of its partitions over raises :class:`PartitionsTakenOver` instead
        of being retried (a retry takes the partitions over again, which a worker that
        lost them in a rebalance must not do before it hears of it); for a caller that can
        read partitions again from their fences (the batch engine)."""
        self.settings = settings
        if score_clock is None:
            score_clock = scoring_clock(settings) if settings.as_of is not None else clock
        self.score_clock = score_clock
        if archive is None and settings.archive_enabled:
            archive = SegmentLog(settings.archive_dir)
        self.archive = archive
        self.store = store
        self.producer = producer
        self.model = model
        self.clock = clock
        self.topics = Topics.from_settings(settings)
        self._validators = validators(settings)
        # partition number -> customer -> state; the two input topics are co-partitioned
        # (same key, same partition count), so one partition number owns a customer.
        self._customers: dict[int, dict[str, StoredCustomer]] = defaultdict(dict)
        self._fences: dict[TopicPartition, int] = {}
        # The highest fence this process saw in Redis or committed, per partition; kept
        # across retries and partition moves (fences only ever move forward), so a fence
        # read below it means Redis lost writes.
        self._committed: dict[TopicPartition, int] = {}
        # Set when the worker stops: a failing batch then stops retrying (BatchAbandoned).
        self.stopping = stopping if stopping is not None else threading.Event()
        self._delivery = delivery
        self.publish_behind = publish_behind
        self.commit_behind = commit_behind
        self.commit_behind_from = commit_behind_from
        self.yield_taken_over = yield_taken_over
        # The commit of the last batch, running while the next one is worked on.
        self._pending: _Pending | None = None
        # Partitions taken over and not revoked since: one whose publication failed is
        # taken over again by the next batch even when none of its messages is in it.
        self._assigned: set[int] = set()

    # --- partition ownership --------------------------------------------------------------

    @property
    def delivery(self) -> OutboxDelivery:
        """What publishes the outboxes of this worker's partitions (:mod:`stream.delivery`)."""
        if self._delivery is None:
            self._delivery = OutboxDelivery(self.settings, self.store.redis, self.store.keys)
            metrics.WORKER_OUTBOX_WAITING.set_function(self._delivery.waiting_entries)
        return self._delivery

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop cached state of partitions this worker no longer (or newly) owns, and stop
        publishing their outboxes until they are taken over again."""
        partitions = set(partitions)
        self._settle_commit()
        self._assigned -= partitions
        self._reload(partitions)
        if self._delivery is not None:
            self._delivery.forget(partitions)

    def _reload(self, partitions: set[int]) -> None:
        """Drop the cached state of ``partitions`` (still owned): it is read from Redis
        again, and their outboxes are taken over again, before their next batch."""
        for partition in partitions:
            self._customers.pop(partition, None)
            for tp in [tp for tp in self._fences if tp[1] == partition]:
                del self._fences[tp]
        if self._delivery is not None:
            self._delivery.drop(partitions)
        metrics.WORKER_CUSTOMERS_CACHED.set(self.cached_customers)

    def forget_all(self) -> None:
        self._assigned.clear()
        self._customers.clear()
        self._fences.clear()
        if self._delivery is not None:
            self._delivery.drop(range(self.store.keys.partitions))

    def take_over(self, partitions: Iterable[int]) -> None:
        """Start owning ``partitions`` (newly assigned): forget their cached state, then
        take their outboxes over (fence earlier owners' producers, publish what they left;
        :mod:`stream.delivery`) before any of their messages is processed. A failure is
        logged, not raised: the partition's next batch, or :meth:`take_over_pending`,
        takes it over."""
        partitions = set(partitions)
        self.forget_partitions(partitions)
        self._assigned |= partitions
        self.take_over_pending(partitions)

    def assign(self, partitions: Iterable[int]) -> None:
        """Start owning ``partitions`` (newly assigned) without taking their outboxes over
        yet: their cached state is forgotten, and the next batch or re-scoring
        (:meth:`rescore_silent`) takes them over. For a caller whose assignment handler
        must not block (the faust engine's event loop)."""
        partitions = set(partitions)
        self.forget_partitions(partitions)
        self._assigned |= partitions

    def take_over_pending(self, partitions: Iterable[int]) -> None:
        """Take over those of ``partitions`` whose outbox is not taken over yet (e.g. an
        earlier take-over failed), so that records left in them are published even while
        no message arrives. Failures are logged."""
        pending = [p for p in set(partitions) if not self.delivery.ready(p)]
        if not pending:
            return
        try:
            self.delivery.take_over(pending)
        except (*REDIS_ERRORS, KafkaException, OSError) as exc:  # type: ignore[misc]
            log.warning(
                "outbox take-over failed; retried with the next batch partitions=%s error=%r",
                ",".join(map(str, sorted(pending))),
                exc,
            )

    def settle(self, wait: bool = True) -> None:
        """Finish the last batch (:meth:`flush`), then wait for the publication of the
        batches' records (``publish_behind``). With ``wait=False`` only look: a failed
        publication among those already done is logged, the running ones are left
        running. A failure is logged, and its partition is taken over again by its next
        batch, or by :meth:`take_over_pending`."""
        if wait:
            self.flush()
        if self._delivery is None:
            return
        try:
            if wait:
                self._delivery.settle()
            else:
                self._delivery.raise_failures()
        except (*REDIS_ERRORS, KafkaException, OSError) as exc:  # type: ignore[misc]
            log.warning("publishing a batch's records failed; retried error=%r", exc)

    def _settle_commit(self) -> None:
        """Before partitions move or the worker stops: wait (a few seconds at most) for
        the last batch's commit. If it failed, the state of its partitions is dropped:
        whoever owns them next reads them again from their fences (this worker too, from
        its next assignment: the batch engine is given every partition anew). Its records
        are not published from here (a rebalance callback, or the worker stopping, where
        the broker may be gone): they stay in the outbox, and the partitions' next
        take-over publishes them."""
        try:
            self._finish_pending(_COMMIT_WAIT_SECONDS, publish=False)
        except CommitFailed as failed:
            log.warning(
                "a batch's commit failed; read again from the fences messages=%d error=%r",
                len(failed.messages),
                failed.error,
            )
            self._reload({m.partition for m in failed.messages})
        except CommitStillRunning:
            log.warning("a batch's commit is still running; its fences decide what it did")

    def close(self) -> None:
        """Give the last batch's commit and the records still being published a few
        seconds (records not published stay in the outbox), then release the outbox
        publishers (producers, the marker reader)."""
        self._settle_commit()
        if self._delivery is not None:
            self._delivery.close()

    def fences_behind(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Those of ``partitions`` whose fence in Redis is behind what this worker committed
        (Redis lost writes), with the fence Redis holds. Their cached state is dropped and
        the record reset: the caller must read them again from ``fence + 1``."""
        known = sorted(tp for tp in set(partitions) if tp in self._committed)
        if not known:
            return {}
        behind = {
            tp: fence
            for tp, fence in self.store.read_fences(known).items()
            if fence < self._committed[tp]
        }
        if behind:
            log.warning(
                "offset fences went back in Redis (it lost committed writes): %s",
                " ".join(f"{t}[{p}]@{f}<{self._committed[(t, p)]}" for (t, p), f in behind.items()),
            )
            self._committed.update(behind)
            self._reload({p for _, p in behind})
        return behind

    @property
    def cached_customers(self) -> int:
        return sum(len(customers) for customers in self._customers.values())

    # --- processing -----------------------------------------------------------------------

    def process(self, messages: Sequence[RawMessage]) -> BatchReport:
        """Apply ``messages`` exactly once; return only when done (retrying failures):
        committed to Redis, and its records published (or, with ``publish_behind``, being
        published: :meth:`settle` waits for them).

        Raises :class:`BatchAbandoned` when :attr:`stopping` is set while the batch fails,
        and (with ``yield_taken_over``) :class:`PartitionsTakenOver`."""
        backoff = _BACKOFF_START
        started = time.perf_counter()
        retries = 0
        while True:
            try:
                report = self._process_once(messages)
                break
            except CommitFailed as failed:
                # The previous batch was not applied: apply it again, then this one.
                self._yield_if_taken_over([*failed.messages, *messages])
                self._reload({m.partition for m in messages})
                self._apply_again(failed)
                continue
            except (*REDIS_ERRORS, KafkaException, FenceMoved, OSError) as exc:  # type: ignore[misc]
                self._yield_if_taken_over(messages, exc)
                retries += 1
                metrics.WORKER_COMMIT_RETRIES.inc()
                # Our in-memory state may be ahead of Redis now: reload on the next try.
                self._reload({m.partition for m in messages})
                log.warning(
                    "batch failed, retrying messages=%d retry=%d backoff_s=%.1f error=%r",
                    len(messages),
                    retries,
                    backoff,
                    exc,
                )
                if self.stopping.wait(backoff):
                    raise BatchAbandoned(f"stopping; batch of {len(messages)} not applied") from exc
                backoff = min(backoff * 2, _BACKOFF_MAX)
        report.retries = retries
        self._observe(messages, report, time.perf_counter() - started)
        return report

    def _yield_if_taken_over(
        self, messages: Sequence[RawMessage], error: BaseException | None = None
    ) -> None:
        """With ``yield_taken_over``, after a failure of the batch of ``messages``: if
        another worker took over any of their partitions since this one did (a refused
        commit, a fenced publication, or a failure that hid it), raise
        :class:`PartitionsTakenOver` with the fences Redis holds for all of the batch's
        partitions (none of it is acknowledged), having forgotten those taken over and
        dropped the others' state. Otherwise return: the failure is retried. One ``GET``
        per partition."""
        if not self.yield_taken_over:
            return
        partitions = {m.partition for m in messages}
        inputs = (self.topics.activity, self.topics.transactions)
        try:
            lost = self.delivery.taken_over(partitions)
            if not lost:
                return
            fences = self.store.read_fences(sorted((t, p) for p in partitions for t in inputs))
        except REDIS_ERRORS as exc:  # retried as any failure is
            log.warning("checking who owns the batch's partitions failed error=%r", exc)
            return
        self.forget_partitions(lost)
        self._reload(partitions - lost)
        log.warning(
            "another worker took partitions over; their batch is read again once the group "
            "says whose they are partitions=%s",
            ",".join(map(str, sorted(lost))),
        )
        raise PartitionsTakenOver(fences) from error

    def flush(self) -> None:
        """Finish the last batch (``commit_behind``): wait for its commit, then publish its
        records; if the commit failed, apply its messages again as :meth:`process` does
        (and raise what it raises). A failed publication (of these records or of earlier
        ones) is logged, not raised: the records are safe in the outbox, and the
        partition's next take-over publishes them (its next batch, or
        :meth:`take_over_pending`)."""
        try:
            self._finish_pending()
        except CommitFailed as failed:
            self._yield_if_taken_over(failed.messages, failed)
            self._apply_again(failed)
        except (*REDIS_ERRORS, KafkaException, OSError) as exc:  # type: ignore[misc]
            _publication_failed(exc)

    def _apply_again(self, failed: CommitFailed) -> None:
        """Apply a batch whose commit failed, from the state and fences Redis holds."""
        metrics.WORKER_COMMIT_RETRIES.inc()
        log.warning(
            "a batch's commit failed, applying it again messages=%d error=%r",
            len(failed.messages),
            failed.error,
        )
        self._reload({m.partition for m in failed.messages})
        self.process(failed.messages)

    def _process_once(self, messages: Sequence[RawMessage]) -> BatchReport:
        report = BatchReport(messages=len(messages))
        fences = self._current_fences({(m.topic, m.partition) for m in messages})
        fresh = [m for m in messages if m.offset > fences[(m.topic, m.partition)]]
        report.fenced = len(messages) - len(fresh)
        now = self.clock()
        events, letters = decode_messages(fresh, self._validators, self.store.keys, now)
        touched, archived, late = self._apply(events, report)
        letters += late
        scores, changes = self._score(touched, self.score_clock())
        if self.archive is not None and archived:
            self.archive.append(archived)
        prepared = self.store.prepare_commit([c.aggregates for c in touched], scores)
        newest: dict[TopicPartition, int] = {}
        for m in fresh:
            tp = (m.topic, m.partition)
            if m.offset > newest.get(tp, -1):
                newest[tp] = m.offset
        new_fences = {tp: (fences[tp], offset) for tp, offset in newest.items()}
        records = self._records(letters, changes)
        # The previous batch's commit ran meanwhile (commit_behind): finish it first, so
        # commits reach Redis one at a time, in order.
        self._finish_pending()
        # Earlier batches' records are published meanwhile (publish_behind): a failure
        # among those publications raises here, before the commit, and the retry takes
        # the partition over again (publishing what it left in the outbox).
        self.delivery.raise_failures()
        partitions = {m.partition for m in messages} | self._assigned
        unowned = [p for p in partitions if not self.delivery.ready(p)]
        if unowned:  # publish what an earlier owner left before adding to it
            self.delivery.take_over(unowned)
            self._assigned.update(p for p in unowned if self.delivery.ready(p))
        outbox = self._outbox_appends(records, {p for _, p in new_fences})
        # In memory from here on; a failed commit drops these partitions' state (process).
        for customer, score in zip(touched, scores, strict=False):
            customer.score = score
        if self.commit_behind and len(messages) >= self.commit_behind_from:
            # The next batch may change these customers before this commit is done: their
            # change tracking is cleared now, and the next batch starts from these fences.
            prepared.mark_written()
            for tp, (_, new) in new_fences.items():
                self._fences[tp] = new
            run = partial(self.store.commit_prepared, prepared, new_fences, outbox, False)
            commit = PendingCommit(messages, run)
            self._pending = _Pending(commit, new_fences, records)
        else:
            appended = self.store.commit_prepared(prepared, new_fences, outbox)
            self._committed_to(new_fences, appended, records)
        report.dead_letters = len(letters)
        report.dead_letter_reasons = count_codes(letters)
        report.scored = len(scores)
        report.band_changes = len(changes)
        event_times = [c.aggregates.last_event for c in touched]
        report.newest_event_time = max(event_times) if event_times else None
        return report

    def _committed_to(
        self,
        new_fences: dict[TopicPartition, tuple[int, int]],
        appended: dict[int, int],
        records: dict[int, list[OutboxRecord]],
        publish: bool = True,
    ) -> None:
        """What follows a batch's commit: record its fences, then publish its records (a
        failure leaves them in the outbox and the retry, or the next batch, publishes them;
        see stream.delivery). With ``publish=False`` they are left in the outbox for the
        partitions' next take-over."""
        for tp, (_, new) in new_fences.items():
            self._fences[tp] = new
            self._committed[tp] = max(self._committed.get(tp, -1), new)
        if not publish:
            return
        published = {p: (seq, records[p]) for p, seq in appended.items()}
        if self.publish_behind:
            self.delivery.deliver_behind(published)
        else:
            self.delivery.deliver(published)

    def _finish_pending(self, timeout: float | None = None, publish: bool = True) -> None:
        """Wait for the last batch's commit (``commit_behind``), then do what follows it
        (without publishing its records when not ``publish``). Raises
        :class:`CommitFailed` (it is forgotten: the caller applies its messages again) or
        :class:`CommitStillRunning` (it is kept)."""
        pending = self._pending
        if pending is None:
            return
        try:
            appended = pending.commit.result(timeout)
        except CommitFailed:
            self._pending = None
            raise
        self._pending = None
        self._committed_to(pending.new_fences, appended, pending.records, publish)

    def _current_fences(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        unknown = sorted(tp for tp in partitions if tp not in self._fences)
        if unknown:
            read = self.store.read_fences(unknown)
            if any(fence < self._committed.get(tp, -1) for tp, fence in read.items()):
                self.fences_behind(partitions)
                raise FencesWentBack(self.store.read_fences(sorted(partitions)))
            self._fences.update(read)
            for tp, fence in read.items():
                self._committed[tp] = max(self._committed.get(tp, -1), fence)
        return {tp: self._fences[tp] for tp in partitions}

    def _apply(
        self, events: Sequence[tuple[RawMessage, Event]], report: BatchReport
    ) -> tuple[list[StoredCustomer], list[ArchivedEvent], list[DeadLetter]]:
        """Apply ``events``; return the customers they changed, the events to archive
        (applied or expired — every valid event seen for the first time) and dead letters
        for the events refused as too late (beyond ``CHURN_DEDUP_DAYS``: they may be
        duplicates that can no longer be recognised, so they are neither counted nor
        archived).

        The events of customers held in memory are applied first, and only then are the
        others' states read from Redis: meanwhile Redis finishes the previous batch's
        commit (``commit_behind``), which that read would otherwise wait behind. A
        customer's events all land in one of the two passes, in their order."""
        customers = self._customers
        held: list[tuple[RawMessage, Event]] = []
        others: list[tuple[RawMessage, Event]] = []
        missing: dict[str, int] = {}
        for pair in events:
            m, event = pair
            if event.customer_id in customers[m.partition]:
                held.append(pair)
            else:
                others.append(pair)
                missing.setdefault(event.customer_id, m.partition)
        touched: dict[str, StoredCustomer] = {}
        archived: list[ArchivedEvent] = []
        late: list[DeadLetter] = []
        self._apply_held(held, report, touched, archived, late)
        if missing:
            self._hold(missing)
            self._apply_held(others, report, touched, archived, late)
            late.sort(key=lambda letter: (letter.source_partition, letter.source_offset))
        metrics.WORKER_CUSTOMERS_CACHED.set(self.cached_customers)
        return list(touched.values()), archived, late

    def _apply_held(
        self,
        events: Sequence[tuple[RawMessage, Event]],
        report: BatchReport,
        touched: dict[str, StoredCustomer],
        archived: list[ArchivedEvent],
        late: list[DeadLetter],
    ) -> None:
        """Apply ``events`` of customers held in memory, adding to ``touched``,
        ``archived`` and ``late`` (see :meth:`_apply`)."""
        # Cost: one dict lookup, CustomerAggregates.apply (a few µs: see there) and one
        # ArchivedEvent (a named tuple) per event; counters are summed locally, not on
        # the report.
        retention = self.settings.retention_days
        dedup = self.settings.dedup_days
        customers = self._customers
        keep = archived.append
        applied = expired = duplicates = 0
        for m, event in events:
            customer_id = event.customer_id
            customer = customers[m.partition][customer_id]
            agg = customer.aggregates
            if agg.apply(event, retention, dedup):
                applied += 1
                touched[customer_id] = customer
            elif _is_expired(agg, event, retention):
                expired += 1  # not counted; it may move the scalars (see apply)
                touched[customer_id] = customer
            elif agg.is_too_late(event, dedup):
                report.too_late += 1
                late.append(too_late_letter(m, agg, dedup))
                continue
            else:
                duplicates += 1
                continue
            keep(ArchivedEvent(event, m.value, m.topic, m.partition, m.offset))
        report.applied += applied
        report.expired += expired
        report.duplicates += duplicates

    # --- re-scoring silent customers ----------------------------------------------------

    def rescore_silent(
        self,
        now: float | None = None,
        older_than_seconds: float | None = None,
        limit: int | None = None,
    ) -> int:
        """Score again, at ``now``, up to ``limit`` customers of the partitions this worker
        owns whose score is older than ``older_than_seconds`` (oldest first; defaults:
        the clock, ``CHURN_RESCORE_AFTER_SECONDS``, ``CHURN_RESCORE_MAX_PER_TICK``), so the
        risk of a customer who went quiet rises without any new event. Off (0) with
        ``CHURN_AS_OF`` set (a fixed time: nothing ages) or without a model.

        It runs where batches run, between two of them, and commits as a batch does: from
        the state held in memory (read from Redis first when not held), the scores and
        band changes in one fenced transaction that moves no fence, the band changes
        through the partitions' outboxes. The commit carries this worker's owner tokens
        (:func:`core.outbox.claim_partition`), so it is refused once another worker has
        taken a partition over since, even when this worker has not noticed yet that it
        lost the partition. So a re-score can neither overwrite a fresher score nor publish
        a band change twice, and the next event compares its band with the re-scored one.

        Returns how many customers were re-scored. A failure (Redis, Kafka, a partition
        taken over) is logged, the partitions' held state dropped (read again from Redis),
        and 0 returned: the next tick tries again. Cost: one ``ZRANGEBYSCORE`` per owned
        partition, then as for a batch of ``limit`` customers without events."""
        settings = self.settings
        model = self.model()
        if model is None or settings.as_of is not None:
            return 0
        self.flush()  # the last batch's commit first: Redis then holds what memory holds
        now = self.clock() if now is None else now
        cutoff = now - (
            settings.rescore_after_seconds if older_than_seconds is None else older_than_seconds
        )
        self.take_over_pending(self._assigned)  # e.g. assigned, no message since
        owned = [p for p in sorted(self._assigned) if self.delivery.ready(p)]
        if not owned:
            return 0
        partitions: set[int] = set()
        try:
            ids = self.store.stale_customers(
                cutoff, settings.rescore_max_per_tick if limit is None else limit, owned
            )
            if not ids:
                return 0
            shard_of = self.store.keys.shard_of
            held = self._customers
            where = {customer_id: shard_of(customer_id) for customer_id in ids}
            partitions = set(where.values())
            self._hold({c: p for c, p in where.items() if c not in held[p]})
            customers = [held[p][c] for c, p in where.items()]
            scores, changes = score_customers(
                model, customers, now, trigger="timer", valuation=valuation_of(model, settings)
            )
            inputs = (self.topics.activity, self.topics.transactions)
            fences = self._current_fences({(t, p) for p in partitions for t in inputs})
            unmoved = {tp: (fence, fence) for tp, fence in fences.items()}
            records = self._records([], changes)
            outbox = self._outbox_appends(records, partitions)
            appended = self.store.commit_prepared(
                self.store.prepare_commit([], scores), unmoved, outbox
            )
        except (*REDIS_ERRORS, KafkaException, FenceMoved, OSError) as exc:  # type: ignore[misc]
            # Whether the commit went through is unknown: what Redis holds decides.
            self._reload(partitions)
            log.warning("re-scoring silent customers failed; the next tick retries error=%r", exc)
            return 0
        for customer, score in zip(customers, scores, strict=True):
            customer.score = score
        try:
            self._committed_to(unmoved, appended, records)
        except (*REDIS_ERRORS, KafkaException, OSError) as exc:  # type: ignore[misc]
            _publication_failed(exc)
        metrics.WORKER_BAND_CHANGES.inc(len(changes))
        metrics.WORKER_CUSTOMERS_CACHED.set(self.cached_customers)
        log.info("rescored silent customers count=%d band_changes=%d", len(scores), len(changes))
        return len(scores)

    def _hold(self, missing: dict[str, int]) -> None:
        """Read the customers of ``missing`` (customer id -> partition) from Redis and hold
        them in memory (unknown ones as new states), in one round trip."""
        if not missing:
            return
        loaded = self.store.load_customers(list(missing))
        for customer_id, partition in missing.items():
            self._customers[partition][customer_id] = loaded[customer_id]

    def _outbox_appends(
        self, records: dict[int, list[OutboxRecord]], partitions: Iterable[int]
    ) -> dict[int, OutboxAppend]:
        """What a commit adds to each of ``partitions``' outboxes: its records there (none:
        only the trimming of delivered entries), where delivery stands, and this worker's
        owner token (the commit is refused if another worker took the partition over)."""
        delivery = self.delivery
        return {
            p: OutboxAppend(
                encode_records(records.get(p, [])),
                delivery.delivered_below(p),
                delivery.owner_token(p),
            )
            for p in partitions
        }

    def _score(
        self, customers: Sequence[StoredCustomer], now: float
    ) -> tuple[list[Score], list[BandChange]]:
        model = self.model()
        if model is None or not customers:
            return [], []
        return score_customers(model, customers, now, valuation=valuation_of(model, self.settings))

    def _records(
        self, letters: Sequence[DeadLetter], changes: Sequence[BandChange]
    ) -> dict[int, list[OutboxRecord]]:
        """The batch's output records by partition: a dead letter in its message's, a band
        change in its customer's (:mod:`core.outbox`)."""
        records: dict[int, list[OutboxRecord]] = defaultdict(list)
        for letter in letters:
            records[letter.source_partition].append(dead_letter_record(self.topics.dlq, letter))
        for change in changes:
            partition = self.store.keys.shard_of(change.customer_id)
            records[partition].append(band_change_record(self.topics.scores, change))
        return records

    def _observe(self, messages: Sequence[RawMessage], report: BatchReport, seconds: float) -> None:
        for topic in {m.topic for m in messages}:
            metrics.WORKER_EVENTS_CONSUMED.labels(topic).inc(
                sum(1 for m in messages if m.topic == topic)
            )
        metrics.WORKER_EVENTS_APPLIED.inc(report.applied)
        metrics.WORKER_EVENTS_IGNORED.labels("duplicate").inc(report.duplicates)
        metrics.WORKER_EVENTS_IGNORED.labels("expired").inc(report.expired)
        metrics.WORKER_EVENTS_IGNORED.labels("too_late").inc(report.too_late)
        metrics.WORKER_EVENTS_IGNORED.labels("fenced").inc(report.fenced)
        for code, count in report.dead_letter_reasons.items():
            metrics.WORKER_DLQ.labels(code).inc(count)
        metrics.WORKER_BATCH_SIZE.observe(len(messages))
        metrics.WORKER_BATCH_SECONDS.observe(seconds)
        metrics.WORKER_BAND_CHANGES.inc(report.band_changes)
        if report.newest_event_time is not None:
            metrics.WORKER_LAG_SECONDS.set(max(self.clock() - report.newest_event_time, 0.0))


def _publication_failed(exc: BaseException) -> None:
    """Outside a batch (idle, re-scoring), after a commit: a publication failed (this one
    or one behind earlier batches). Nothing is lost: its partition was dropped, and its
    next take-over publishes what is left in the outbox."""
    log.warning(
        "publishing records failed; the partition's next take-over publishes them error=%r", exc
    )


def _is_expired(agg: CustomerAggregates, event: Event, retention_days: int) -> bool:
    day = int(event.event_time.timestamp()) // DAY_SECONDS
    return day <= agg.last_event // DAY_SECONDS - retention_days
