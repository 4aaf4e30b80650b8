"""Where the worker's time goes: the BatchProcessor alone under cProfile, and a worker run
sampled with py-spy (see :mod:`bench.worker_bench`)."""

from __future__ import annotations

import cProfile
import logging
import pstats
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import stream.batch as batch_module
from bench.common import REPO_ROOT
from bench.worker_support import (
    Input,
    WorkerProcess,
    delete_topics,
    drop_keys,
    fences_applied,
    isolated,
    produce_lines,
    promote_champion,
    wait_first_batch,
)
from core.archive import SegmentLog
from core.kafka_client import input_end_offsets
from core.keys import Keys
from core.model import LinearModel
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore
from stream.batch import BatchProcessor
from stream.delivery import OutboxDelivery
from stream.garbage_collector import tune_garbage_collector
from stream.messages import RawMessage

log = logging.getLogger("bench.worker")

# --- 3. the BatchProcessor alone --------------------------------------------------------


def batch_processor_rate(
    settings: Settings,
    messages: Sequence[RawMessage],
    model: LinearModel,
    batch: int,
    profile: cProfile.Profile | None = None,
) -> tuple[float, int]:
    """Feed ``messages`` to a fresh BatchProcessor (own key prefix), with the worker's
    garbage-collector settings, committing each batch and publishing its records while
    the next is worked on, as the worker (batch engine) does; return (eps, scored)."""
    tune_garbage_collector()  # as the worker does
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    producer = EventProducer(settings, create_topics=False)
    processor = BatchProcessor(
        settings, store, producer, lambda: model, publish_behind=True, commit_behind=True
    )
    # Taking the partitions' outboxes over (a transactional producer each) is what a
    # worker does once, at assignment: not part of the rate.
    processor.take_over({m.partition for m in messages})
    scored = 0
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    for i in range(0, len(messages), batch):
        report = processor.process(messages[i : i + batch])
        scored += report.scored
        if report.dead_letters or report.retries:
            raise RuntimeError(f"unexpected batch report: {report}")
    processor.settle()  # the last batch's commit is done and its records published too
    if profile is not None:
        profile.disable()
    elapsed = time.perf_counter() - start
    producer.close(30)
    return len(messages) / elapsed, scored


_STAGES = (
    ("stream/batch.py", "process", "BatchProcessor.process (all)"),
    ("stream/batch.py", "_current_fences", "read fences"),
    ("stream/messages.py", "decode_messages", "decode + validate"),
    ("stream/batch.py", "_apply", "apply to aggregates (incl. loading new customers)"),
    ("core/store.py", "load_customers", "load customers from Redis (HGETALL)"),
    ("stream/batch.py", "_score", "score (features + model)"),
    ("core/features.py", "feature_matrix", "feature_matrix"),
    ("core/archive.py", "append", "append to the event archive"),
    ("core/store.py", "prepare_commit", "encode the writes (msgpack)"),
    ("core/store.py", "commit_prepared", "commit to Redis (one EVALSHA, fenced; on a thread)"),
    ("stream/batch.py", "_finish_pending", "wait for the previous batch's commit"),
    ("stream/delivery.py", "deliver_behind", "queue the records for publication"),
    ("stream/delivery.py", "settle", "wait for the last publications (once, at the end)"),
    ("stream/batch.py", "_observe", "metrics"),
)

# Stages timed with perf_counter by stage_times: (object, attribute, label). Nested
# stages (loading inside applying) are also counted in their parent.
_TIMED = (
    (BatchProcessor, "_process_once", "whole batch"),
    (BatchProcessor, "_current_fences", "read fences"),
    (batch_module, "decode_messages", "decode + validate"),
    (BatchProcessor, "_apply", "apply to aggregates (incl. loading new customers)"),
    (FeatureStore, "load_customers", "of which: load new customers from Redis"),
    (BatchProcessor, "_score", "features + model"),
    (SegmentLog, "append", "append to the event archive"),
    (FeatureStore, "prepare_commit", "encode the writes"),
    (FeatureStore, "commit_prepared", "commit to Redis (one fenced EVALSHA, on a thread)"),
    (BatchProcessor, "_finish_pending", "wait for the previous batch's commit"),
    (OutboxDelivery, "deliver_behind", "queue the records for publication"),
)


def stage_times(
    settings: Settings, messages: Sequence[RawMessage], model: LinearModel, batch: int
) -> dict[str, Any]:
    """Where a batch's time goes, without a profiler's overhead: each stage of
    :meth:`BatchProcessor.process` wrapped in a ``perf_counter`` timer for one pass over
    ``messages`` (a fresh key prefix). Returns µs per event and ms per batch for each."""
    spent: dict[str, float] = defaultdict(float)
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in _TIMED]

    def timed(function: Any, label: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        return wrapper

    for (owner, name, function), (_, _, label) in zip(originals, _TIMED, strict=True):
        setattr(owner, name, timed(function, label))
    try:
        eps, _ = batch_processor_rate(settings, messages, model, batch)
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
    n, batches = len(messages), -(-len(messages) // batch)
    stages = {
        label: {
            "us_per_event": round(spent[label] * 1e6 / n, 2),
            "ms_per_batch": round(spent[label] * 1e3 / batches, 2),
        }
        for _, _, label in _TIMED
    }
    return {"eps": round(eps), "events": n, "batch_size": batch, "stages": stages}


def profile_summary(profile: cProfile.Profile, top: int = 10) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    Row = tuple[int, int, float, float, Any]  # (primitive calls, calls, self, cum, callers)
    table = cast(dict[tuple[str, int, str], Row], stats.stats)  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]

    def where(key: tuple[str, int, str]) -> str:
        path, line, name = key
        short = path.replace(str(REPO_ROOT) + "/", "")
        short = short.split("site-packages/")[-1]
        return f"{short}:{line}({name})"

    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    top_self = [
        f"{nc:>8} calls  {tt:7.3f}s self ({100 * tt / total:4.1f}%)  {ct:7.3f}s cum  {where(k)}"
        for k, (_, nc, tt, ct, _) in rows
    ]
    stages: dict[str, Any] = {}
    process_cum = None
    for suffix, name, label in _STAGES:
        for (path, _, func), (_, nc, _, ct, _) in table.items():
            if func == name and path.endswith(suffix):
                if name == "process":
                    process_cum = ct
                stages[label] = {"seconds": round(ct, 3), "calls": nc}
    if process_cum:
        for value in stages.values():
            value["share_of_process"] = round(value["seconds"] / process_cum, 3)
    return {"total_seconds": round(total, 3), "top_by_self_time": top_self, "stages": stages}


# --- py-spy -----------------------------------------------------------------------------


_WATCHED_FRAMES = (
    "BatchProcessor.process (stream/batch.py)",
    "BatchProcessor._current_fences (stream/batch.py)",
    "decode_messages (stream/messages.py)",
    "BatchProcessor._apply (stream/batch.py)",
    "FeatureStore.load_customers (core/store.py)",
    "BatchProcessor._score (stream/batch.py)",
    "SegmentLog.append (core/archive.py)",
    "OutboxDelivery.deliver_behind (stream/delivery.py)",
    "FeatureStore.prepare_commit (core/store.py)",
    "FeatureStore.commit_prepared (core/store.py)",
    "BatchProcessor._observe (stream/batch.py)",
    "BatchConsumer._valid (stream/batch_consumer.py)",
    "BatchConsumer._commit (stream/batch_consumer.py)",
)


def py_spy_summary(raw: Path, top: int = 12) -> dict[str, Any]:
    """Per thread: sample share, busiest leaf lines, and the inclusive share of the
    worker's stages, from ``py-spy record --threads --idle -f raw`` output."""
    threads: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {"self": Counter(), "inclusive": Counter()}
    )
    sizes: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1] if head.startswith("thread") else "?"
        if not frames:
            continue
        sizes[thread] += count
        threads[thread]["self"][_frame_name(frames[-1], keep_line=True)] += count
        for name in {_frame_name(f) for f in frames}:
            threads[thread]["inclusive"][name] += count
    total = sum(sizes.values())
    if not total:
        return {"samples": 0}
    summary: dict[str, Any] = {"samples": total, "threads": {}}
    for thread, n in sizes.most_common():
        if n < total * 0.01:
            continue
        counters = threads[thread]
        summary["threads"][thread] = {
            "share_of_samples": round(n / total, 3),
            "top_self": [
                f"{100 * c / n:5.1f}%  {name}" for name, c in counters["self"].most_common(top)
            ],
            "stages_inclusive": {
                name: round(counters["inclusive"][name] / n, 3)
                for name in _WATCHED_FRAMES
                if counters["inclusive"][name]
            },
        }
    return summary


def _frame_name(frame: str, keep_line: bool = False) -> str:
    """``func (path/to/file.py:123)`` -> ``func (short/file.py)`` (or ``…file.py:123``)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":") if ":" in where else (where, "", "")
    path = path.replace(str(REPO_ROOT) + "/", "").split("site-packages/")[-1]
    if keep_line and line:
        path = f"{path}:{line}"
    return f"{name} ({path})" if path else name


def profiled_worker_run(
    base: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    model: LinearModel,
    py_spy: str,
    seconds: int = 8,
) -> dict[str, Any]:
    settings = isolated(base, "wspy", root)
    stack.callback(delete_topics, base, [settings.topic_prefix], [settings.consumer_group])
    stack.callback(drop_keys, connect_redis(base), [settings.redis_key_prefix])
    promote_champion(settings, model)
    produce_lines(settings, data.lines)
    ends = input_end_offsets(settings)
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    worker = WorkerProcess(settings, root / "worker-py-spy.log")
    stack.callback(worker.stop)
    worker.start()
    wait_first_batch(store, ends, worker.exited, worker.log_tail)
    raw = root / "py-spy.raw"
    command = [py_spy, "record", "-p", str(worker.pid), "-d", str(seconds), "--idle",
               "--threads", "-f", "raw", "-o", str(raw)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
    _, drained = fences_applied(store, ends)
    summary = py_spy_summary(raw)
    summary["command"] = " ".join(["py-spy", *command[1:3], "<worker pid>", *command[4:-1], "FILE"])
    summary["drained_during_sampling"] = drained
    summary["note"] = (
        "a separate worker run on the same input (sampling slows the worker, so it is "
        "not the timed run); --idle keeps the samples where the event loop waits"
    )
    worker.stop()
    return summary
