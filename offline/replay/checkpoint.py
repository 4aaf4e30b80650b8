"""Resume bookkeeping: what a replay has delivered, saved so an interrupted one can go on.

A checkpoint is a small JSON file, rewritten atomically (temporary file, fsync, rename)
every few seconds while a replay runs. It records, for each source of the replay plan,
the position up to which every event was **confirmed delivered** (the producer was
flushed and reported no failure before the file was written), and the end offsets of the
input topics at that moment.

``--resume`` starts each source at its recorded position. Events sent after the last
checkpoint and before the interruption (e.g. a SIGKILL) may or may not have reached Kafka;
those that did sit in the topics after the recorded end offsets, so resuming first reads
that tail and skips the events whose ids it finds there (:func:`delivered_since`). Nothing
confirmed is sent again, and nothing that reached Kafka is sent twice.

Checkpoints live in ``<run_dir>/replay/<plan id>.json`` unless ``--checkpoint`` names a
file. The plan id hashes the inputs' paths, the filters and the destination, so the same
command finds its own checkpoint; the inputs' sizes and modification times are recorded
too, and resuming refuses inputs that changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from offline.replay.sources import InputFile, Position

CHECKPOINT_VERSION = 1
TopicEnds = dict[str, dict[int, int]]  # topic -> partition -> next offset to be written


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, for other inputs, or inputs changed."""


def plan_id(identity: dict[str, Any]) -> str:
    """A stable id of a replay's inputs, filters and destination.

    >>> plan_id({"inputs": ["/a.jsonl"], "topics": "t."}) == plan_id({"topics": "t.",
    ...     "inputs": ["/a.jsonl"]})
    True
    """
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Checkpoint:
    """The delivered prefix of a replay. ``positions[i]`` belongs to ``sources[i]``;
    ``delivered`` counts events confirmed delivered over all sessions of this replay;
    ``read`` counts the events read up to the positions (sent, filtered or skipped)."""

    plan: str
    sources: list[dict[str, Any]]
    positions: list[Position]
    total: int
    delivered: int = 0
    read: int = 0
    topic_ends: TopicEnds = field(default_factory=dict)
    complete: bool = False
    spill_dir: str | None = None
    started_at: str = field(default_factory=lambda: _now())
    updated_at: str = field(default_factory=lambda: _now())
    version: int = CHECKPOINT_VERSION

    def source_files(self) -> list[InputFile]:
        """The sources, after checking that none changed since the checkpoint."""
        files = []
        for recorded in self.sources:
            path = Path(recorded["path"])
            try:
                current = InputFile.at(path, recorded["format"])
            except ValueError:
                raise CheckpointError(
                    f"{path} is gone since the interrupted replay; it cannot be resumed"
                ) from None
            if (current.size, current.mtime_ns) != (recorded["size"], recorded["mtime_ns"]):
                raise CheckpointError(
                    f"{path} changed since the interrupted replay (size or modification "
                    f"time); it cannot be resumed safely. Run without --resume to start over."
                )
            files.append(current)
        return files

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a crash) sees the old or the new file, whole."""
        self.updated_at = _now()
        document = asdict(self)
        document["topic_ends"] = {
            topic: {str(p): end for p, end in ends.items()}
            for topic, ends in self.topic_ends.items()
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with temp.open("w") as out:
            json.dump(document, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint at {path}") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the checkpoint {path}: {exc}") from None
        if document.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: unknown checkpoint version {document.get('version')}")
        document["positions"] = [tuple(p) for p in document["positions"]]
        document["topic_ends"] = {
            topic: {int(p): end for p, end in ends.items()}
            for topic, ends in document.get("topic_ends", {}).items()
        }
        return cls(**document)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` so two replays never write the same checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"another replay of the same inputs is running (it holds {path}.lock)"
            ) from None
        yield


# --- the topics' tail --------------------------------------------------------------------


def topic_partitions(admin: Any, topics: list[str], timeout: float = 30.0) -> dict[str, list[int]]:
    """The partition numbers of each of ``topics``."""
    metadata = admin.list_topics(timeout=timeout).topics
    return {topic: sorted(metadata[topic].partitions) for topic in topics}


def topic_ends(
    admin: Any,
    topics: list[str],
    timeout: float = 30.0,
    partitions: dict[str, list[int]] | None = None,
) -> TopicEnds:
    """The next offset to be written in every partition of ``topics`` (``partitions``,
    when known, saves a metadata request).

    Retries while the cluster answers with a retriable error (e.g. partitions of a topic
    created a moment ago that have no leader yet), up to ``timeout`` seconds.
    """
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    deadline = time.monotonic() + timeout
    while True:
        try:
            known = partitions or topic_partitions(admin, topics, timeout)
            wanted = {
                TopicPartition(topic, partition): OffsetSpec.latest()
                for topic in topics
                for partition in known[topic]
            }
            ends: TopicEnds = {topic: {} for topic in topics}
            for tp, future in admin.list_offsets(wanted, request_timeout=timeout).items():
                ends[tp.topic][tp.partition] = future.result().offset
            return ends
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in _TRANSIENT
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _transient_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset(
        {
            KafkaError.NOT_LEADER_FOR_PARTITION,
            KafkaError.LEADER_NOT_AVAILABLE,
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError.REQUEST_TIMED_OUT,
            KafkaError._TIMED_OUT,
            KafkaError._TRANSPORT,
        }
    )


_TRANSIENT = _transient_codes()


class _IdOnly(msgspec.Struct):
    event_id: str


_ID_DECODER = msgspec.json.Decoder(_IdOnly)


def delivered_since(
    config: dict[str, Any], since: TopicEnds, admin: Any, timeout: float = 60.0
) -> Counter[str]:
    """How many times each ``event_id`` occurs in the topics after the ``since`` offsets
    (up to their current ends). Records that are not events are ignored."""
    from confluent_kafka import Consumer, TopicPartition

    now = topic_ends(admin, list(since))
    assignment = [
        TopicPartition(topic, partition, start)
        for topic, ends in since.items()
        for partition, start in ends.items()
        if now[topic].get(partition, 0) > start
    ]
    found: Counter[str] = Counter()
    if not assignment:
        return found
    remaining = {(tp.topic, tp.partition): now[tp.topic][tp.partition] for tp in assignment}
    consumer = Consumer(
        {
            **config,
            "group.id": f"churnstream-replay-resume-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign(assignment)
        deadline = datetime.now(UTC).timestamp() + timeout
        while remaining and datetime.now(UTC).timestamp() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error() or (message.topic(), message.partition()) not in remaining:
                    continue
                with suppress(msgspec.MsgspecError):
                    found[_ID_DECODER.decode(message.value()).event_id] += 1
            # Positions, not message offsets, say when a partition is read to its end
            # (they also step over records that are never delivered, e.g. control records).
            positions = consumer.position([TopicPartition(t, p) for t, p in remaining])
            for tp in positions:
                if tp.offset >= remaining[(tp.topic, tp.partition)]:
                    del remaining[(tp.topic, tp.partition)]
        if remaining:
            raise TimeoutError(
                f"could not read the topics' tail within {timeout:.0f}s: {sorted(remaining)}"
            )
    finally:
        consumer.close()
    return found
