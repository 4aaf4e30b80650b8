"""What the worker wrote: the at-risk board, read from Redis (and the lag from Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from rich.console import Console

from churnstream.demo.worker_child import WorkerChild
from core.kafka_client import client_config
from core.keys import Keys
from core.model import BandCutoffs
from core.redis_client import connect_redis
from core.registry import ModelRegistry, RegistryError
from core.score_reads import RankedCustomer
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics

TOP_N = 10


@dataclass(frozen=True)
class AtRisk:
    customer_id: str
    score: float
    band: str
    model_version: str
    scored_at: float | None
    last_event_time: int | None

    @classmethod
    def of(cls, ranked: RankedCustomer) -> AtRisk:
        return cls(
            customer_id=ranked.customer_id,
            score=ranked.score,
            band=ranked.band or "?",
            model_version=ranked.model_version or "",
            scored_at=ranked.scored_at,
            last_event_time=ranked.last_event_time,
        )


@dataclass
class Snapshot:
    """What the worker has written to Redis, and how far behind the stream it is."""

    scored: int = 0
    bands: dict[str, int] | None = None  # by the champion's cut-offs; None without one
    top: list[AtRisk] = field(default_factory=list)
    champion: str | None = None
    lag: int | None = None  # input events not yet applied; None when unknown
    applied_any: bool = False
    error: str | None = None


class RiskBoard:
    """Reads the at-risk view: a few Redis round trips plus one Kafka offsets request."""

    def __init__(self, settings: Settings, worker: WorkerChild | None) -> None:
        self.settings = settings
        self.worker = worker
        self.redis = connect_redis(settings)
        self.store = FeatureStore(self.redis, Keys.of(settings))
        self.registry = ModelRegistry(settings, self.redis)
        self.admin: AdminClient | None = AdminClient(client_config(settings))
        self.partitions = self._input_partitions()
        self.cutoffs: tuple[str, BandCutoffs] | None = None  # (champion version, its bands)
        self.last = Snapshot()

    def close(self) -> None:
        """Let go of the Kafka and Redis clients (before the stack stops: no reconnect noise)."""
        self.admin = None
        self.redis.close()

    def _input_partitions(self) -> list[tuple[str, int]]:
        topics = Topics.from_settings(self.settings)
        assert self.admin is not None
        metadata = self.admin.list_topics(timeout=10).topics
        return [
            (topic, partition)
            for topic in (topics.activity, topics.transactions)
            if topic in metadata
            for partition in sorted(metadata[topic].partitions)
        ]

    def poll(self) -> Snapshot:
        try:
            self.last = self._read()
        except Exception as exc:  # the view keeps the last snapshot, and says why
            self.last.error = f"{type(exc).__name__}: {exc}"
        return self.last

    def _read(self) -> Snapshot:
        ends = self._end_offsets()
        pointer = self.registry.champion()
        page = self.store.scores.at_risk(None, 0, TOP_N)
        bands = self.cutoffs[1] if self.cutoffs else None
        counts = self.store.scores.band_counts(bands) if bands is not None else None
        fences = self.store.read_fences(self.partitions)
        snapshot = Snapshot(scored=page.total, bands=counts)
        if pointer is not None:
            snapshot.champion = pointer.version
        if self.partitions:
            snapshot.applied_any = any(f >= 0 for f in fences.values())
            if ends is not None:
                snapshot.lag = sum(max(ends[tp] - 1 - fence, 0) for tp, fence in fences.items())
        snapshot.top = [AtRisk.of(customer) for customer in page.customers]
        self._follow_champion(snapshot.champion)
        return snapshot

    def _end_offsets(self) -> dict[tuple[str, int], int] | None:
        """The next offset to be written per input partition; None when Kafka is slow."""
        if not self.partitions or self.admin is None:
            return None
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        wanted = {TopicPartition(t, p): latest for t, p in self.partitions}
        try:
            futures = self.admin.list_offsets(wanted, request_timeout=2)
            return {
                (tp.topic, tp.partition): future.result(timeout=3).offset
                for tp, future in futures.items()
            }
        except Exception:
            return None

    def _follow_champion(self, version: str | None) -> None:
        """Band cut-offs of the current champion (reloaded when it changes)."""
        if version is None or (self.cutoffs is not None and self.cutoffs[0] == version):
            return
        try:
            model = self.registry.load_champion()
        except RegistryError:
            return
        if model is not None:
            self.cutoffs = (model.version, model.bands)


def print_scored(console: Console, board: RiskBoard) -> None:
    snapshot = board.poll()
    if snapshot.error is not None:
        console.print(f"[yellow]could not read the scores:[/] {snapshot.error}")
        return
    if board.worker is None and not snapshot.scored:
        return  # --no-worker, and no worker of the user's scored anybody
    line = f"scored {snapshot.scored:,} customers"
    if snapshot.bands is not None:
        b = snapshot.bands
        line += f" (high {b['high']:,}, medium {b['medium']:,}, low {b['low']:,})"
    console.print(line, highlight=False)
