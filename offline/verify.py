"""Online-offline consistency: recompute every customer from the event archive, compare
with Redis (the logic behind ``churnstream verify``).

**The watermark.** The worker archives a batch's events *before* it commits the batch to
Redis, and every commit moves the offset fence of each (topic, partition) it read. So the
events Redis reflects are exactly the archived events of the input topics whose offset is
at or below their partition's fence: the watermark. Archived rows above it (a batch
archived just before a crash) are left out; they are applied, and archived again, when the
worker catches up. The fences are read from Redis, so no Kafka connection is needed.

**The recomputation** uses the worker's own code: each customer's archived events, in
event-time order, go through :meth:`CustomerAggregates.apply` with the same retention
and dedup window; it ignores event ids already counted, so archive copies of one event
count once (events the worker refused as too late, beyond the dedup window, went to the
dead-letter topic, not to the archive). The result is compared with the customer's stored aggregates
(:func:`offline.consistency.state_differences`: tiles, counted event ids, scalars) and with
the features of both at one reference time ``t`` (default: one second after the newest
event at the watermark, so every feature window holds data).

**Customers** are ``compared`` (in both), ``missing`` (events in the archive, no state in
Redis) or ``extra`` (state in Redis, no archived event at the watermark).

**Scale.** A first pass reads only the small columns, to find the customers and their
event counts; customers are then processed in sorted-id ranges of at most
``max_events_in_memory`` archived rows (one range for a few million events), and within a
range in chunks of ``chunk_customers``, each read from Redis in one pipelined round trip.

Verification assumes the worker is idle or stopped: if a fence moves while it runs (the
worker applied more events), the report says so and the comparison may show differences
that are not errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from core.aggregates import CustomerAggregates
from core.archive import SCHEMA, EventArchive, read_segment
from core.events import decode_event
from core.features import FEATURE_NAMES, feature_matrix
from core.store import FeatureStore
from core.topics import Topics
from offline.consistency import FeatureComparison, FeatureDiff, differs, state_differences

TopicPartition = tuple[str, int]
Progress = Callable[[int, int], None]  # (archived rows done, total) at the watermark

_WANTED = ["customer_id", "event_time", "event_id", "event"]
_INDEX = ["customer_id", "event_time"]


class NothingToVerify(RuntimeError):
    """No worker progress (fences) under the configured Redis key prefix."""


@dataclass
class VerifyReport:
    """What ``verify`` found. Times are epoch seconds (UTC)."""

    reference_time: int | None
    fences: dict[str, int]
    archive_rows: int  # rows of the input topics' events in the archive (with copies)
    rows_at_watermark: int
    rows_beyond_watermark: int
    events_counted: int  # distinct events the recomputation counted
    events_ignored: int  # copies of counted events, and events older than the retention
    customers_in_archive: int
    customers_in_redis: int
    customers_compared: int = 0
    mismatched: int = 0
    state_mismatches: int = 0
    feature_mismatches: int = 0
    missing: int = 0
    extra: int = 0
    mismatched_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    features: list[FeatureDiff] = field(default_factory=list)
    tolerance: float = 1e-9
    watermark_moved: bool = False
    seconds: float = 0.0

    @property
    def mismatch_rate(self) -> float:
        """Mismatched customers / compared customers (0 when none were compared)."""
        return self.mismatched / self.customers_compared if self.customers_compared else 0.0

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.extra or self.watermark_moved)

    def as_dict(self) -> dict[str, object]:
        at = self.reference_time
        return {
            "ok": self.ok,
            "reference_time": (
                datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
                if at is not None
                else None
            ),
            "customers_compared": self.customers_compared,
            "mismatched": self.mismatched,
            "mismatch_rate": self.mismatch_rate,
            "state_mismatches": self.state_mismatches,
            "feature_mismatches": self.feature_mismatches,
            "missing": self.missing,
            "extra": self.extra,
            "customers_in_archive": self.customers_in_archive,
            "customers_in_redis": self.customers_in_redis,
            "archive_rows": self.archive_rows,
            "rows_at_watermark": self.rows_at_watermark,
            "rows_beyond_watermark": self.rows_beyond_watermark,
            "events_counted": self.events_counted,
            "events_ignored": self.events_ignored,
            "watermark_moved": self.watermark_moved,
            "tolerance": self.tolerance,
            "seconds": round(self.seconds, 3),
            "fences": self.fences,
            "mismatched_ids": self.mismatched_ids,
            "missing_ids": self.missing_ids,
            "extra_ids": self.extra_ids,
            "examples": self.examples,
            "features": [f.as_dict() for f in self.features],
        }


# --- the watermark ------------------------------------------------------------------------


def read_watermark(store: FeatureStore, topics: Topics) -> dict[TopicPartition, int]:
    """Every fence of the two input topics in Redis: last applied offset per partition."""
    wanted = [
        (topic, partition)
        for topic in (topics.activity, topics.transactions)
        for partition in store.keys.shards
    ]
    return {tp: fence for tp, fence in store.read_fences(wanted).items() if fence >= 0}


def watermark_mask(table: pa.Table, fences: dict[TopicPartition, int]) -> np.ndarray:
    """Per row of ``table`` (columns ``topic``, ``partition``, ``offset``): whether its
    offset is at or below its partition's fence. Rows of other topics, or of partitions
    without a fence, are outside.

    >>> t = pa.table({"topic": ["a", "a", "b", "x", "a"], "partition": [0, 0, 1, 0, 7],
    ...               "offset": [4, 5, 0, 0, 0]})
    >>> watermark_mask(t, {("a", 0): 4, ("b", 1): 0}).tolist()
    [True, False, True, False, False]
    """
    n = table.num_rows
    if not fences or not n:
        return np.zeros(n, dtype=bool)
    names = sorted({topic for topic, _ in fences})
    width = max(partition for _, partition in fences) + 1
    limit = np.full((len(names), width), -1, dtype=np.int64)
    for (topic, partition), offset in fences.items():
        limit[names.index(topic), partition] = offset
    topic_index = (
        pc.fill_null(pc.index_in(table["topic"], value_set=pa.array(names)), -1)
        .to_numpy(zero_copy_only=False)
        .astype(np.int64)
    )
    partition = table["partition"].to_numpy(zero_copy_only=False).astype(np.int64)
    offset = table["offset"].to_numpy(zero_copy_only=False).astype(np.int64)
    known = (topic_index >= 0) & (partition >= 0) & (partition < width)
    inside = np.zeros(n, dtype=bool)
    inside[known] = offset[known] <= limit[topic_index[known], partition[known]]
    return inside


# --- reading the archive --------------------------------------------------------------------


def _dataset(archive: EventArchive) -> ds.Dataset | None:
    """The archive's Parquet files and its not yet compacted segments, as one dataset."""
    parts: list[ds.Dataset] = []
    files = archive.files()
    if files:
        parts.append(ds.dataset([str(p) for p in files], schema=SCHEMA, format="parquet"))
    segments = [read_segment(path) for path in archive.segments()]
    if segments:
        parts.append(ds.InMemoryDataset(pa.concat_tables(segments), schema=SCHEMA))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ds.dataset(parts)


def _batches_at_watermark(
    dataset: ds.Dataset,
    topics: Topics,
    fences: dict[TopicPartition, int],
    columns: list[str],
    where: ds.Expression | None = None,
) -> Iterator[tuple[pa.Table, int]]:
    """The input topics' archived rows at the watermark, batch by batch (``columns``
    only), each with the number of rows of its batch beyond the watermark."""
    condition = ds.field("topic").isin([topics.activity, topics.transactions])
    if where is not None:
        condition = condition & where
    read = list(dict.fromkeys([*columns, "topic", "partition", "offset"]))
    for batch in dataset.to_batches(columns=read, filter=condition):
        table = pa.Table.from_batches([batch])
        inside = watermark_mask(table, fences)
        yield table.filter(pa.array(inside)).select(columns), int(len(inside) - inside.sum())


def customer_ranges(
    ids: Sequence[str], counts: Sequence[int], max_rows: int
) -> list[tuple[str, str]]:
    """Split sorted customer ids into contiguous (first, last) ranges of at most
    ``max_rows`` rows each (a single customer with more rows gets a range of its own).

    >>> customer_ranges(["a", "b", "c", "d"], [3, 3, 3, 1], max_rows=6)
    [('a', 'b'), ('c', 'd')]
    """
    ranges: list[tuple[str, str]] = []
    start, total = 0, 0
    for i, count in enumerate(counts):
        if total and total + count > max_rows:
            ranges.append((ids[start], ids[i - 1]))
            start, total = i, 0
        total += count
    if len(ids):
        ranges.append((ids[start], ids[len(ids) - 1]))
    return ranges


@dataclass
class _Range:
    """The archived events of one range of customers at the watermark, in recomputation
    order: ``order`` indexes ``events``; run ``i`` (one customer) is
    ``order[starts[i]:ends[i]]``."""

    events: pa.ChunkedArray
    order: np.ndarray
    customers: list[str]
    starts: np.ndarray
    ends: np.ndarray


def _read_range(
    dataset: ds.Dataset,
    topics: Topics,
    fences: dict[TopicPartition, int],
    where: ds.Expression | None,
) -> _Range:
    """Read one customer range at the watermark; order it by (customer, event time,
    event id) through an index, so the event bytes are not copied as a whole."""
    parts = [part for part, _ in _batches_at_watermark(dataset, topics, fences, _WANTED, where)]
    rows = pa.concat_tables(parts) if parts else SCHEMA.empty_table().select(_WANTED)
    del parts
    sort_keys = [("customer_id", "ascending"), ("event_time", "ascending"),
                 ("event_id", "ascending")]  # fmt: skip
    order = pc.sort_indices(rows.select([k for k, _ in sort_keys]), sort_keys=sort_keys)
    order = order.to_numpy()
    codes = pc.dictionary_encode(rows["customer_id"].take(pa.array(order))).combine_chunks()
    index = codes.indices.to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(index)) + 1]) if len(index) else index
    ends = np.append(starts[1:], len(index)) if len(index) else index
    customers = [str(c) for c in codes.dictionary.take(pa.array(index[starts])).to_pylist()]
    return _Range(rows["event"], order, customers, starts, ends)


# --- the comparison ---------------------------------------------------------------------------


def verify(
    store: FeatureStore,
    archive: EventArchive,
    topics: Topics,
    retention_days: int,
    at: int | None = None,
    tolerance: float = 1e-9,
    max_examples: int = 20,
    chunk_customers: int = 2000,
    chunk_events: int = 50_000,
    max_events_in_memory: int = 500_000,
    progress: Progress | None = None,
    *,
    dedup_days: int | None,
) -> VerifyReport:
    """Recompute every customer at the watermark and compare with Redis (see the module
    docstring). ``at`` is the reference time of the feature comparison (epoch seconds,
    UTC); ``retention_days`` and ``dedup_days`` are the worker's (``CHURN_RETENTION_DAYS``,
    ``CHURN_DEDUP_DAYS``; required, since a recomputation with another window keeps other
    event hashes and differs). Raises :class:`NothingToVerify` when Redis holds no fence of
    the input topics."""
    started = time.perf_counter()
    fences = read_watermark(store, topics)
    if not fences:
        raise NothingToVerify(
            f"no offset fences of {topics.activity} or {topics.transactions} under the key "
            f"prefix {store.keys.prefix!r}: has a worker with these settings applied any "
            "events? (check REDIS_URL, CHURN_REDIS_KEY_PREFIX and CHURN_TOPIC_PREFIX)"
        )
    redis_ids = {
        store.keys.customer_id_of(key)
        for key in store.redis.scan_iter(match=store.keys.customer_pattern(), count=10_000)
    }

    # Pass 1: the small columns only — which customers, how many rows, the newest time.
    dataset = _dataset(archive)
    archive_counts: dict[str, int] = {}
    rows_at, rows_beyond, newest = 0, 0, None
    if dataset is not None:
        for part, beyond in _batches_at_watermark(dataset, topics, fences, _INDEX):
            rows_beyond += beyond
            if not part.num_rows:
                continue
            rows_at += part.num_rows
            ids, counts = pc.value_counts(part["customer_id"]).flatten()
            for customer_id, count in zip(ids.to_pylist(), counts.to_pylist(), strict=True):
                archive_counts[customer_id] = archive_counts.get(customer_id, 0) + count
            latest = pc.max(part["event_time"]).as_py()
            newest = latest if newest is None else max(newest, latest)
    if at is None and newest is not None:
        at = int(newest.timestamp()) + 1
    report = VerifyReport(
        reference_time=at,
        fences={f"{t}[{p}]": offset for (t, p), offset in sorted(fences.items())},
        archive_rows=rows_at + rows_beyond,
        rows_at_watermark=rows_at,
        rows_beyond_watermark=rows_beyond,
        events_counted=0,
        events_ignored=0,
        customers_in_archive=len(archive_counts),
        customers_in_redis=len(redis_ids),
        tolerance=tolerance,
    )

    missing = sorted(set(archive_counts) - redis_ids)
    extra = sorted(redis_ids - set(archive_counts))
    report.missing, report.missing_ids = len(missing), missing[:max_examples]
    report.extra, report.extra_ids = len(extra), extra[:max_examples]

    comparison = FeatureComparison(FEATURE_NAMES, tolerance)
    windows = (retention_days, dedup_days)
    ids = sorted(archive_counts)
    done = 0
    if progress is not None:
        progress(0, report.rows_at_watermark)
    for first, last in customer_ranges(ids, [archive_counts[i] for i in ids], max_events_in_memory):
        assert dataset is not None  # there are customers, so there are files
        where = None
        if (first, last) != (ids[0], ids[-1]):
            where = (ds.field("customer_id") >= first) & (ds.field("customer_id") <= last)
        part = _read_range(dataset, topics, fences, where)
        run = 0
        while run < len(part.customers):
            # chunk_customers customers, or fewer when they have many events
            stop = run + 1
            budget = part.starts[run] + max(chunk_events, 1)
            while stop < len(part.customers) and stop - run < chunk_customers:
                if part.ends[stop] > budget:
                    break
                stop += 1
            done += _compare_chunk(store, part, run, stop, redis_ids, windows, at,
                                   comparison, report, max_examples)  # fmt: skip
            run = stop
            if progress is not None:
                progress(done, report.rows_at_watermark)
        del part

    report.features = comparison.results()
    report.watermark_moved = read_watermark(store, topics) != fences
    report.seconds = time.perf_counter() - started
    return report


def _compare_chunk(
    store: FeatureStore,
    part: _Range,
    first: int,
    stop: int,
    redis_ids: set[str],
    windows: tuple[int, int | None],
    at: int | None,
    comparison: FeatureComparison,
    report: VerifyReport,
    max_examples: int,
) -> int:
    """Recompute and compare customers ``first`` to ``stop`` (exclusive) of ``part``;
    return the archived rows they had."""
    begin, end = int(part.starts[first]), int(part.ends[stop - 1])
    raw = part.events.take(pa.array(part.order[begin:end])).to_pylist()
    expected: list[CustomerAggregates] = []
    for i in range(first, stop):
        agg = CustomerAggregates(part.customers[i])
        for data in raw[int(part.starts[i]) - begin : int(part.ends[i]) - begin]:
            if agg.apply(decode_event(data), *windows):
                report.events_counted += 1
            else:
                report.events_ignored += 1
        expected.append(agg)
    present = [agg for agg in expected if agg.customer_id in redis_ids]
    if not present:
        return end - begin
    stored = store.load_customers([agg.customer_id for agg in present])
    actual = [stored[agg.customer_id].aggregates for agg in present]
    feature_bad = (
        comparison.add(feature_matrix(present, at), feature_matrix(actual, at))
        if at is not None
        else np.zeros(len(present), dtype=bool)
    )
    report.customers_compared += len(present)
    for want, got, bad_features in zip(present, actual, feature_bad.tolist(), strict=True):
        differences = state_differences(want, got)
        if not differences and not bad_features:
            continue
        report.mismatched += 1
        report.state_mismatches += bool(differences)
        report.feature_mismatches += bool(bad_features)
        if len(report.mismatched_ids) < max_examples:
            report.mismatched_ids.append(want.customer_id)
            if bad_features and at is not None:
                differences = differences + _feature_lines(want, got, at, comparison.tolerance)
            report.examples[want.customer_id] = differences
    return end - begin


def _feature_lines(
    want: CustomerAggregates, got: CustomerAggregates, at: int, tolerance: float
) -> list[str]:
    expected = feature_matrix([want], at)[0]
    actual = feature_matrix([got], at)[0]
    bad = differs(expected, actual, tolerance)
    return [
        f"feature {name}: {e:.6g} expected, {a:.6g} actual"
        for name, e, a, b in zip(FEATURE_NAMES, expected, actual, bad, strict=True)
        if b
    ][:10]
