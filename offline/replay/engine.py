"""The replay loop: filter, pace, send, and checkpoint what was delivered.

:func:`run_replay` takes the merged stream of :data:`~offline.replay.sources.Item` (in
replay order) and hands each event that passes the filters to the sinks: Kafka (through
:class:`~core.producer.EventProducer`'s delivery guarantees: idempotent, ``acks=all``,
keyed by customer id) and/or the event archive. Every ``checkpoint_seconds`` (or
``checkpoint_events`` events) the sinks are flushed and a checkpoint of the positions
reached is written (see :mod:`offline.replay.checkpoint`). Ctrl-C or SIGTERM stops at the
next event, flushes, and checkpoints, so ``--resume`` continues exactly there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.events import Event, EventValidationError
from offline.replay.checkpoint import Checkpoint, TopicEnds
from offline.replay.sources import Item, Position

if TYPE_CHECKING:
    from core.archive import EventArchive
    from core.producer import EventProducer

_SHOW_INVALID = 20
_TICK_EVERY = 4096  # events between progress updates and checkpoint checks
ARCHIVE_BATCH = 50_000  # events buffered before an archive write


class ReplayDeliveryError(RuntimeError):
    """Kafka reported failed deliveries: the checkpoint stays before them."""


@dataclass(frozen=True)
class ReplayFilters:
    """Which events to send: ``start <= event_time < end`` (UTC; either may be open) and,
    with ``customers``, only those customers' events."""

    start: datetime | None = None
    end: datetime | None = None
    customers: frozenset[str] | None = None

    @property
    def active(self) -> bool:
        return self.start is not None or self.end is not None or self.customers is not None

    def accepts(self, event: Event) -> bool:
        """
        >>> from datetime import UTC
        >>> from core.events import Like, ItemReactionPayload
        >>> e = Like(event_id="e", customer_id="c1", payload=ItemReactionPayload(),
        ...          event_time=datetime(2026, 1, 2, tzinfo=UTC))
        >>> ReplayFilters(start=datetime(2026, 1, 2, tzinfo=UTC)).accepts(e)
        True
        >>> ReplayFilters(end=datetime(2026, 1, 2, tzinfo=UTC)).accepts(e)
        False
        >>> ReplayFilters(customers=frozenset({"c2"})).accepts(e)
        False
        """
        at = event.event_time
        if self.start is not None and at < self.start:
            return False
        if self.end is not None and at >= self.end:
            return False
        return self.customers is None or event.customer_id in self.customers

    def identity(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "customers": sorted(self.customers) if self.customers is not None else None,
        }


@dataclass
class InvalidLog:
    """Invalid input lines: counted by code, the first few kept, all written to ``sink``."""

    sink: IO[str] | None = None
    by_code: Counter[str] = field(default_factory=Counter)
    shown: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.by_code.values())

    def __call__(self, file: str, error: EventValidationError) -> None:
        self.by_code[error.code] += 1
        if len(self.shown) < _SHOW_INVALID:
            self.shown.append(f"{file}: {error}")
        if self.sink is not None:
            import json

            record = {"file": file, "line": error.line, "code": error.code,
                      "field": error.field, "reason": error.reason}  # fmt: skip
            self.sink.write(json.dumps(record) + "\n")


@dataclass
class EventTally:
    """Events counted by type, and the earliest and latest event time (UTC; ``None``
    before the first event)."""

    by_type: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None

    def count(self, event_type: str, at: datetime) -> None:
        self.by_type[event_type] += 1
        self.first = at if self.first is None or at < self.first else self.first
        self.last = at if self.last is None or at > self.last else self.last


@dataclass
class ReplayStats(EventTally):
    """This session's counts. ``read`` events came out of the sources; each was ``sent``
    (tallied by type and time), ``filtered`` out, or skipped as ``already_delivered``
    (found in Kafka on resume)."""

    read: int = 0
    sent: int = 0
    filtered: int = 0
    already_delivered: int = 0
    interrupted: bool = False
    seconds: float = 0.0


# --- sinks -------------------------------------------------------------------------------


class KafkaSink:
    """Sends validated events through an :class:`EventProducer`."""

    def __init__(self, producer: EventProducer, admin: Any) -> None:
        self.producer = producer
        self.admin = admin
        topics = producer.topics
        self.topic_of = {"activity": topics.activity, "transactions": topics.transactions}
        self._failed_seen = 0
        self._partitions: dict[str, list[int]] | None = None

    def send_function(self) -> Callable[[Event], None]:
        return self.producer.send_validated

    def flush(self) -> None:
        """Wait until every event sent so far is delivered; raise if any failed."""
        remaining = self.producer.flush(120)
        stats = self.producer.stats
        if stats.failed > self._failed_seen or remaining:
            self._failed_seen = stats.failed
            errors = "; ".join(stats.errors[:3])
            raise ReplayDeliveryError(
                f"{stats.failed:,} events failed delivery and {remaining:,} are undelivered"
                + (f" ({errors})" if errors else "")
            )

    def ends(self) -> TopicEnds:
        from offline.replay.checkpoint import topic_ends, topic_partitions

        topics = list(self.topic_of.values())
        if self._partitions is None:  # a replay does not outlive a partition change
            self._partitions = topic_partitions(self.admin, topics)
        return topic_ends(self.admin, topics, partitions=self._partitions)


class ArchiveSink:
    """Appends events to the event archive in batches (written at each checkpoint)."""

    def __init__(self, archive: EventArchive, source: str = "replay") -> None:
        self.archive = archive
        self.source = source
        self.rows: list[Any] = []
        self.files = 0

    def send_function(self) -> Callable[[Event], None]:
        from core.archive import ArchivedEvent

        rows, source = self.rows, self.source

        def send(event: Event) -> None:
            rows.append(ArchivedEvent.of(event, source))
            if len(rows) >= ARCHIVE_BATCH:
                self.flush()

        return send

    def flush(self) -> None:
        if self.rows:
            self.files += len(self.archive.write(self.rows, source=self.source))
            self.rows.clear()


# --- the loop ----------------------------------------------------------------------------


@dataclass
class Checkpointing:
    """Where and how often to checkpoint; ``state`` is updated in place and saved."""

    path: Path
    state: Checkpoint
    every_seconds: float = 2.0
    every_events: int = 200_000


def run_replay(
    stream: Iterable[Item],
    sinks: list[KafkaSink | ArchiveSink],
    *,
    filters: ReplayFilters = ReplayFilters(),
    speed: float | None = None,
    checkpointing: Checkpointing | None = None,
    delivered_before: Counter[str] | None = None,
    on_progress: Callable[[ReplayStats], object] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplayStats:
    """Send ``stream``'s events to ``sinks``; return this session's counts.

    ``speed`` paces the sending to that many times real time (``None``: as fast as
    possible). ``delivered_before`` holds event ids already in Kafka after the last
    checkpoint (from :func:`~offline.replay.checkpoint.delivered_since`): such events are
    skipped once each. When ``should_stop()`` turns true (checked every few thousand
    events and while pacing), the replay ends early with a final checkpoint and
    ``stats.interrupted`` set.
    """
    stats = ReplayStats()
    sends = [sink.send_function() for sink in sinks]
    send = sends[0] if len(sends) == 1 else _fan_out(sends)
    kafka = next((s for s in sinks if isinstance(s, KafkaSink)), None)
    state = checkpointing.state if checkpointing is not None else None
    positions: list[Position] = list(state.positions) if state is not None else []
    done: list[Item | None] = [None] * len(positions)
    read_before = state.read if state is not None else 0
    pending = delivered_before if delivered_before else None
    check = filters.accepts if filters.active else None
    pacer = _Pacer(speed, should_stop) if speed is not None else None
    by_type = stats.by_type
    started = time.monotonic()
    marks = {"at": started, "sent": 0}  # the last checkpoint: when, and sent by then

    def save(complete: bool = False) -> None:
        for sink in sinks:
            sink.flush()
        if state is None or checkpointing is None:
            return
        for index, item in enumerate(done):
            if item is not None:
                positions[index] = (item[2], item[3])
        state.positions = list(positions)
        state.delivered += stats.sent - marks["sent"]
        state.read = read_before + stats.read
        state.complete = complete
        if kafka is not None:
            state.topic_ends = kafka.ends()  # after the flush, before anything else is sent
        state.save(checkpointing.path)
        marks["sent"], marks["at"] = stats.sent, time.monotonic()

    every_events = checkpointing.every_events if checkpointing else 0
    every_seconds = checkpointing.every_seconds if checkpointing else 0.0
    if state is not None:
        save()  # the starting point, before anything is sent (records the topic ends)
    read = sent = 0
    last: Item | None = None
    try:
        for item in stream:
            event = item[4]
            if check is not None and not check(event):
                stats.filtered += 1
            elif pending and pending.get(event.event_id):
                pending[event.event_id] -= 1
                if not pending[event.event_id]:
                    del pending[event.event_id]
                stats.already_delivered += 1
            else:
                if pacer is not None and not pacer.wait(item[0]):
                    break  # asked to stop while pacing; this event was not sent
                if last is None:
                    stats.first = item[0]
                send(event)
                sent += 1
                by_type[event.type] += 1
                last = item
            # Marked done only once handled, so a position never passes an unsent event.
            if done:
                done[item[1]] = item
            read += 1
            # At full speed every few thousand events; when paced, after every wait too
            # (there is time to spare then, and checkpoints must not wait for 4096 events).
            if not read % _TICK_EVERY or (pacer is not None and pacer.waited):
                stats.read, stats.sent = read, sent
                if on_progress is not None:
                    on_progress(stats)
                if should_stop():
                    break
                if checkpointing is not None and (
                    sent - marks["sent"] >= every_events
                    or time.monotonic() - marks["at"] >= every_seconds
                ):
                    save()
        else:
            stats.read, stats.sent = read, sent
            save(complete=True)
            return stats
        stats.interrupted = True
        stats.read, stats.sent = read, sent
        save()
        return stats
    finally:
        stats.read, stats.sent = read, sent
        stats.last = last[0] if last is not None else None
        stats.seconds = time.monotonic() - started
        if on_progress is not None:
            on_progress(stats)


def _fan_out(sends: list[Callable[[Event], None]]) -> Callable[[Event], None]:
    def send(event: Event) -> None:
        for one in sends:
            one(event)

    return send


class _Pacer:
    """Sleeps so that event time advances ``speed`` times faster than the wall clock."""

    def __init__(self, speed: float, should_stop: Callable[[], bool]) -> None:
        self.speed = speed
        self.should_stop = should_stop
        self.origin: tuple[float, float] | None = None  # (event epoch s, monotonic s)
        self.waited = False  # whether the last call slept

    def wait(self, at: datetime) -> bool:
        """Wait until ``at`` is due; ``False`` when asked to stop meanwhile."""
        event_s = at.timestamp()
        self.waited = False
        if self.origin is None:
            self.origin = (event_s, time.monotonic())
            return True
        due = self.origin[1] + (event_s - self.origin[0]) / self.speed
        while (delay := due - time.monotonic()) > 0:
            self.waited = True
            if self.should_stop():
                return False
            time.sleep(min(delay, 0.2))
        return True
