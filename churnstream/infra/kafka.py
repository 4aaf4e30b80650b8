"""A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for local use.

The broker's jars come from Maven Central (``kafka-pom.xml`` next to this module, resolved
once with ``mvn`` into a cache directory); the broker runs with plain ``java -cp 'libs/*'``.

Layout of the broker's home (``<run_dir>/kafka``)::

    server.properties   rewritten at every start (ports may change)
    log4j.properties    rewritten at every start
    cluster-id          created once; the storage is formatted once with it
    data/               log.dirs (topics and the KRaft metadata log)
    kafka.log           the broker's log (log4j) and the JVM's own stdout/stderr
    kafka.pid           pid of the running broker
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from churnstream.infra.processes import InfraError, port_open, start_detached
from churnstream.infra.service import HOST, LocalService

log = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
# The readiness check's producers (KafkaBroker.answers) take ids starting with this, each
# a new one: an id the broker knows gets its old producer id back (an epoch bump), which
# would not show that the broker can hand out new ones. The broker forgets them after
# transactional.id.expiration.ms (7 days); they never open a transaction.
READY_PROBE_TRANSACTIONAL_ID = "churnstream-infra-ready-probe-"


def _has_kafka_jar(libs_dir: Path) -> bool:
    return libs_dir.is_dir() and any(libs_dir.glob("kafka_2.13-*.jar"))


def ensure_kafka_jars(libs_dir: Path) -> Path:
    """Make sure ``libs_dir`` holds the broker's jars; fetch them with Maven when it does not.

    The jars are resolved into a temporary directory next to ``libs_dir`` and renamed into
    place, so an interrupted download never leaves a half-filled ``libs_dir``. Returns the
    (expanded) ``libs_dir``. Raises :class:`InfraError` when ``mvn`` is missing or fails.
    """
    libs_dir = libs_dir.expanduser()
    if _has_kafka_jar(libs_dir):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(
            f"Kafka broker jars are missing from {libs_dir} and Maven is not installed to "
            "fetch them from Maven Central (apt-get install maven)."
        )
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching kafka jars with maven libs_dir=%s", libs_dir)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".kafka-libs-", dir=libs_dir.parent) as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_bytes(resources.files("churnstream.infra").joinpath("kafka-pom.xml").read_bytes())
        out = Path(tmp) / "libs"
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out}",
        ]
        try:
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise InfraError("mvn did not finish fetching the Kafka jars within 30 min") from exc
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or not _has_kafka_jar(out):
            raise InfraError(
                f"mvn failed to fetch the Kafka broker jars (exit {proc.returncode})",
                "\n".join(output.splitlines()[-40:]),
            )
        if libs_dir.is_dir() and not any(libs_dir.iterdir()):
            libs_dir.rmdir()
        try:
            out.rename(libs_dir)
        except OSError as exc:
            if not _has_kafka_jar(libs_dir):  # else another process won the race: fine
                raise InfraError(
                    f"cannot move the Kafka jars into {libs_dir} ({exc}); "
                    "remove that directory and try again"
                ) from exc
    jars = len(list(libs_dir.glob("*.jar")))
    log.info("kafka jars ready libs_dir=%s jars=%d elapsed=%.1fs", libs_dir, jars, _since(started))
    return libs_dir


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like CLI options
            return cluster_id


def find_java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin/java`` first, then ``PATH``)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise InfraError(
            "java is not installed; the Kafka broker needs Java 17+ "
            "(apt-get install openjdk-17-jre-headless)"
        )
    return java


def _prop(value: str | Path) -> str:
    """Escape a value for a Java .properties file."""
    return str(value).replace("\\", "\\\\")


@dataclass(frozen=True)
class KafkaBroker(LocalService):
    """One local broker: its files under ``home``, its ports and its jars."""

    home: Path
    port: int
    controller_port: int
    libs_dir: Path
    heap: str = "512m"

    name: ClassVar[str] = "kafka"
    file_stem: ClassVar[str] = "kafka"
    title: ClassVar[str] = "Kafka broker"
    poll_seconds: ClassVar[float] = 0.2

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.home / "log4j.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster-id"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    @property
    def markers(self) -> tuple[str, ...]:
        """What the broker's command line contains: main class and this home's config."""
        return (KAFKA_MAIN, str(self.server_properties))

    # --- files ----------------------------------------------------------------------------

    def write_config(self) -> None:
        """Write server.properties and log4j.properties for a light single-node broker."""
        self.home.mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": _prop(self.data_dir),
            # One node: no replication, and small internal topics so the first consumer
            # group join and the first transaction do not wait for 50 partitions to load.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "2",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.partitions": "8",
            # Lighter on a small (2-core) machine.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "4",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),  # default 128 MiB of heap
            # Keep data by size, not age: replayed or simulated events carry old timestamps,
            # and time-based retention would delete them minutes after they are produced.
            "log.retention.ms": "-1",
            "log.retention.bytes": str(1024 * 1024 * 1024),  # per partition
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        lines = ["# Written by churnstream infra at every start; edits are overwritten."]
        lines += [f"{key}={value}" for key, value in settings.items()]
        self.server_properties.write_text("\n".join(lines) + "\n")

        loggers = {
            "kafka": "INFO",
            "org.apache.kafka": "INFO",
            # Per-partition and per-request chatter.
            "state.change.logger": "WARN",
            "kafka.request.logger": "WARN",
            "kafka.network.RequestChannel$": "WARN",
            "kafka.authorizer.logger": "WARN",
            "kafka.cluster": "WARN",
            "kafka.log": "WARN",
            "kafka.log.LogCleaner": "WARN",
            "org.apache.kafka.storage": "WARN",
            "kafka.server.ReplicaFetcherManager": "WARN",
            "kafka.server.ReplicaAlterLogDirsManager": "WARN",
            "org.apache.kafka.clients": "WARN",
            "kafka.server.KafkaConfig": "WARN",  # ~300-line config dumps
            "org.apache.kafka.common.config": "WARN",
            "kafka.server.DelayedOperationPurgatory$ExpiredOperationReaper": "WARN",
            "kafka.server.ClientQuotaManager$ThrottledChannelReaper": "WARN",
        }
        log4j = [
            "# Written by churnstream infra at every start; edits are overwritten.",
            "log4j.rootLogger=INFO, file",
            "log4j.appender.file=org.apache.log4j.FileAppender",
            f"log4j.appender.file.File={_prop(self.log_file)}",
            "log4j.appender.file.Append=true",
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
        ]
        log4j += [f"log4j.logger.{name}={level}" for name, level in loggers.items()]
        self.log4j_properties.write_text("\n".join(log4j) + "\n")

    def cluster_id(self) -> str:
        """The cluster id of this home, created on first use and kept for good."""
        if self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        cluster_id = new_cluster_id()
        self.cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id

    def format_storage(self) -> None:
        """Format ``data/`` with the cluster id, once (skipped when already formatted)."""
        if (self.data_dir / "meta.properties").exists():
            return
        argv = [
            find_java(),
            "-Xmx256m",
            f"-Dlog4j.configuration=file:{self.log4j_properties}",
            "-cp",
            f"{self.libs_dir}/*",
            STORAGE_TOOL,
            "format",
            "-t",
            self.cluster_id(),
            "-c",
            str(self.server_properties),
            "--ignore-formatted",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise InfraError(
                f"formatting Kafka storage in {self.data_dir} failed (jars: {self.libs_dir}; "
                "if that directory is incomplete, delete it to fetch the jars again)",
                output,
            )
        log.info("kafka storage formatted data_dir=%s", self.data_dir)

    # --- process ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before the start: jars (fetched once), config files, storage format."""
        ensure_kafka_jars(self.libs_dir)
        self.write_config()
        self.format_storage()

    def argv(self) -> list[str]:
        return [
            find_java(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.log4j_properties}",
            "-cp",
            f"{self.libs_dir}/*",
            KAFKA_MAIN,
            str(self.server_properties),
        ]

    def start(self) -> int:
        """Start the broker detached (call :meth:`prepare` first); return its pid."""
        return start_detached(
            self.argv(), log_file=self.log_file, pid_file=self.pid_file, cwd=self.home
        )

    def answers(self, timeout: float = 3.0) -> bool:
        """True when the client port is open, a metadata request succeeds and the
        transaction coordinator hands out producer ids.

        After each start, until that coordinator has loaded its log and fetched a block
        of producer ids from the controller, every idempotent or transactional producer
        (the worker's outbox, the SDK's) is refused and librdkafka prints a ``GETPID ...
        Coordinator load in progress`` warning while it retries; the broker answers
        metadata up to a few seconds before that."""
        if not port_open(HOST, self.port):
            return False
        config: dict[str, Any] = {
            "bootstrap.servers": self.address,
            "socket.connection.setup.timeout.ms": int(timeout * 1000),
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return bool(metadata.brokers) and self._gives_producer_ids(config, timeout)

    @staticmethod
    def _gives_producer_ids(config: dict[str, Any], timeout: float) -> bool:
        transactional_id = READY_PROBE_TRANSACTIONAL_ID + uuid.uuid4().hex
        probe = Producer({**config, "transactional.id": transactional_id})
        try:
            probe.init_transactions(timeout)
        except KafkaException:
            return False
        finally:
            probe.flush(0)
        return True


def _since(started: float) -> float:
    return time.monotonic() - started
