"""The Faust app: topics, the agent that applies micro-batches, timers, the metrics page.

Everything the agent and timers do lives in plain classes (:mod:`stream.batch`,
:mod:`stream.champion`); this module only wires them to Faust.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any

import faust
import mode
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.keys import Keys
from core.metrics import component_registry
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from core.topics import Topics
from stream.batch import BatchAbandoned, BatchProcessor, FencesWentBack
from stream.batch_consumer import BatchConsumer
from stream.champion import ChampionWatcher
from stream.garbage_collector import tune_garbage_collector
from stream.messages import RawMessage
from stream.shutdown import EXIT_SHUTDOWN_DEADLINE

log = logging.getLogger(__name__)

# Batches of at least CHURN_BATCH_SIZE / this many messages are committed behind the next
# one (a batch that large means the worker is behind); smaller ones in line.
_COMMIT_BEHIND_SHARE = 4

EXIT_UNEXPECTED_ERROR = 70  # a bug, not a transient failure: stop without acknowledging


class WorkerRuntime:
    """The worker's long-lived parts, created when the worker starts."""

    def __init__(self, settings: Settings, stopping: threading.Event | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        client = connect_redis(settings)
        self.store = FeatureStore(client, Keys.of(settings))
        self.models = ChampionWatcher(
            ModelRegistry(settings, client), check_seconds=settings.model_check_seconds
        )
        # Each batch's records are published while the next one is worked on; with the
        # batch engine, which reads every assigned partition from its fence, so is the
        # Redis commit of a large batch (the worker is behind: throughput counts). A small
        # batch (the worker keeps up: latency counts) is committed before the next one. A
        # batch refused because another worker took a partition over goes back to the
        # batch engine, which reads it again once the group has said whose it is.
        self.processor = BatchProcessor(
            settings,
            self.store,
            None,
            self.models,
            stopping=stopping,
            publish_behind=True,
            commit_behind=settings.worker_engine == "batch",
            commit_behind_from=max(1, settings.batch_size // _COMMIT_BEHIND_SHARE),
            yield_taken_over=settings.worker_engine == "batch",
        )
        tune_garbage_collector()

    def process(self, messages: list[RawMessage]) -> None:
        report = self.processor.process(messages)
        log.debug(
            "batch applied messages=%d applied=%d duplicates=%d fenced=%d dlq=%d scored=%d",
            report.messages,
            report.applied,
            report.duplicates,
            report.fenced,
            report.dead_letters,
            report.scored,
        )

    def rotate_archive(self) -> bool:
        """Close this worker's archive segment (it is then ready for compaction); False
        when the archive is off."""
        if self.processor.archive is None:
            return False
        self.processor.archive.rotate()
        return True

    async def compact_archive(self) -> int:
        """Close this worker's archive segment, then turn closed segments into Parquet in
        a child process at the lowest CPU priority: the compaction's CPU work (Arrow,
        Parquet, zstd) would otherwise hold the worker's GIL for tens of milliseconds, or
        take its core, and delay batches. Returns the child's exit status."""
        if not await asyncio.to_thread(self.rotate_archive):
            return 0
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _COMPACT_CODE, str(self.settings.archive_dir)
        )
        status = await child.wait()
        if status != 0:
            log.warning("archive compaction failed status=%d; the next tick retries", status)
        return status


# Run by the compaction child: ``EventArchive(<archive dir>).compact()``.
# The compaction child runs at the lowest CPU priority (nice 19): it is background work,
# and on a machine with few cores it would otherwise take CPU time from the worker's
# batches (and from Redis and Kafka) for the seconds a minute of events takes to compact.
_COMPACT_NICENESS = 19
_COMPACT_CODE = (
    "import os, sys\n"
    f"os.nice({_COMPACT_NICENESS})\n"
    "from core.archive import EventArchive\n"
    "EventArchive(sys.argv[1]).compact()\n"
)


def _broker_url(settings: Settings) -> str:
    servers = settings.kafka_bootstrap_servers.split(",")
    return ";".join(f"kafka://{server.strip()}" for server in servers)


def _credentials(settings: Settings) -> Any:
    """Faust credentials matching the KAFKA_SECURITY_PROTOCOL / SASL / SSL settings."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location)
        if settings.kafka_ssl_certificate_location:
            key_password = settings.kafka_ssl_key_password
            context.load_cert_chain(
                settings.kafka_ssl_certificate_location,
                settings.kafka_ssl_key_location,
                key_password.get_secret_value() if key_password else None,
            )
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def create_app(settings: Settings, stopping: threading.Event | None = None) -> faust.App:
    """The worker app for ``settings``; its parts are created when the worker starts.
    Setting ``stopping`` (on SIGTERM, before the app stops) makes a batch that keeps
    failing give up rather than hold up the stop (see :class:`stream.batch.BatchAbandoned`).

    With the 'batch' engine the input topics are read by a consumer in the group
    ``CHURN_CONSUMER_GROUP`` and the Faust app itself (timers, web) uses its own group.
    """
    app_id = settings.consumer_group
    if settings.worker_engine == "batch":
        app_id = f"{settings.consumer_group}-app"
    app = faust.App(
        app_id,
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=max(settings.worker_session_timeout_seconds / 4, 1.0),
        stream_wait_empty=False,
        web_enabled=True,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        datadir=str(settings.run_dir / "worker"),
    )
    state: dict[str, WorkerRuntime] = {}

    def runtime() -> WorkerRuntime:
        if "runtime" not in state:
            state["runtime"] = WorkerRuntime(settings, stopping)
        return state["runtime"]

    if settings.worker_engine == "faust":
        _add_faust_agent(app, settings, runtime)
    else:
        app.service(_batch_ingest_service(settings, runtime))

    if settings.worker_engine == "faust":
        # The batch engine re-scores on its consumer thread, between batches; here the
        # agent's batches and this timer both run on the event loop, one at a time. Each
        # worker re-scores the customers of the partitions it owns.

        @app.timer(interval=settings.rescore_tick_seconds)  # type: ignore[untyped-decorator]
        async def rescore_silent_customers() -> None:
            try:
                runtime().processor.rescore_silent()
            except FencesWentBack:  # the agent's next batch stops the worker for it
                log.warning("re-scoring skipped: offset fences went back in Redis")

    if settings.archive_enabled:

        @app.timer(interval=settings.archive_compact_seconds)  # type: ignore[untyped-decorator]
        async def compact_archive() -> None:
            await runtime().compact_archive()

    @app.timer(interval=settings.model_check_seconds)  # type: ignore[untyped-decorator]
    async def check_champion_model() -> None:
        runtime().models.refresh()

    inputs = {Topics.from_settings(settings).activity, Topics.from_settings(settings).transactions}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: faust.App, revoked: set[TP], **_: Any) -> None:
        if "runtime" in state and settings.worker_engine == "faust":
            partitions = {tp.partition for tp in revoked if tp.topic in inputs}
            state["runtime"].processor.forget_partitions(partitions)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def forget_assigned(sender: faust.App, assigned: set[TP], **_: Any) -> None:
        # State from an earlier assignment may be stale. The outboxes are taken over by
        # the next batch or re-scoring tick (stream.batch), not here: blocking Faust's loop
        # in this handler for the take-over left newly assigned partitions unread.
        if settings.worker_engine == "faust":  # (creating the runtime does no I/O)
            partitions = {tp.partition for tp in assigned if tp.topic in inputs}
            runtime().processor.assign(partitions)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp takes the charset separately from the content type
        page = generate_latest(component_registry("worker"))
        return web.bytes(page, content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    return app


def _add_faust_agent(
    app: faust.App, settings: Settings, runtime: Callable[[], WorkerRuntime]
) -> None:
    """The 'faust' engine: an agent reading both topics with ``stream.take_events``."""
    topics = Topics.from_settings(settings)
    source = app.topic(
        topics.activity,
        topics.transactions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name="apply_events")
    async def apply_events(stream: faust.StreamT[bytes]) -> None:
        """Apply each micro-batch to Redis before its events are acknowledged."""
        within = settings.batch_within_ms / 1000
        async for events in stream.take_events(settings.batch_size, within=within):  # type: ignore[attr-defined]
            messages = [
                RawMessage(
                    topic=e.message.topic,
                    partition=e.message.partition,
                    offset=e.message.offset,
                    key=e.message.key,
                    value=e.message.value,
                )
                for e in events
            ]
            try:
                runtime().process(messages)
            except BatchAbandoned:
                # Stopping while the batch fails: returning would acknowledge it (Faust
                # acks a taken batch whatever happened), so exit as a crash would; the
                # batch is applied after a restart.
                log.warning("stopping with a batch not applied messages=%d", len(messages))
                logging.shutdown()
                os._exit(EXIT_SHUTDOWN_DEADLINE)
            except FencesWentBack:
                # This engine resumes from Kafka's committed offsets, not from the fences:
                # it cannot read the lost range again. Stop loudly rather than skip it.
                log.critical(
                    "offset fences went back in Redis (it lost committed writes); the faust "
                    "engine cannot read those events again: use CHURN_WORKER_ENGINE=batch",
                    exc_info=True,
                )
                logging.shutdown()
                os._exit(EXIT_UNEXPECTED_ERROR)
            except Exception:
                _exit_on_bug()


def _batch_ingest_service(
    settings: Settings, runtime: Callable[[], WorkerRuntime]
) -> type[mode.Service]:
    """The 'batch' engine: a confluent-kafka consumer in its own thread, started and
    stopped with the app (see :mod:`stream.batch_consumer`)."""

    class BatchIngest(mode.Service):
        async def on_start(self) -> None:
            self._stop = threading.Event()
            worker = runtime()
            consumer = BatchConsumer(settings, worker.processor, worker.store)
            self._thread = threading.Thread(
                target=self._consume, args=(consumer,), name="batch-consumer", daemon=True
            )
            self._thread.start()

        def _consume(self, consumer: BatchConsumer) -> None:
            try:
                consumer.run(self._stop)
            except Exception:
                _exit_on_bug()

        async def on_stop(self) -> None:
            self._stop.set()
            runtime().processor.stopping.set()
            # A daemon thread: should closing the consumer hang (Kafka unreachable), the
            # shutdown deadline (stream.shutdown) ends the process anyway.
            await asyncio.to_thread(self._thread.join, settings.worker_shutdown_seconds)

    return BatchIngest


def _exit_on_bug() -> None:
    # process() retries transient failures itself; anything else is a bug. Exit before
    # the batch is acknowledged: it is applied after a restart.
    log.critical("unexpected error applying a batch; exiting", exc_info=True)
    logging.shutdown()
    os._exit(EXIT_UNEXPECTED_ERROR)
