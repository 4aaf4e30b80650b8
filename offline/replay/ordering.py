"""Replay order: all events in event-time order, in constant memory.

**Guarantee.** Events are sent in non-decreasing ``event_time``. Events with the same time
keep their input order: the inputs in the order given (the files of a folder by name), the
lines of a file in file order. Since a customer's events all go to one partition (keyed by
customer id), each customer's events reach Kafka in event-time order.

**How.** A quick scan reads only the ``event_time`` of every record. A file whose times
never go backwards is read as it is. Any other file is sorted externally: read
``sort_buffer`` events at a time, each chunk sorted in memory and written to a spill folder
as a sorted run (canonical JSON lines). All the sorted streams (files and runs) are then
merged k-way (:func:`heapq.merge`), holding one event per stream. With more than
:data:`FAN_IN` streams, consecutive ones are first merged into larger runs, so no more than
``FAN_IN`` files are ever open. Memory is bounded by ``sort_buffer`` events while sorting
and by ``FAN_IN`` events while merging, whatever the size of the input.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.events import EventValidator, encode_event
from offline.replay.sources import (
    START,
    FileScan,
    InputFile,
    InvalidHandler,
    Item,
    Position,
    read_events,
    scan_file,
)

FAN_IN = 128
DEFAULT_SORT_BUFFER = 200_000


@dataclass
class Plan:
    """What will be replayed: ``sources`` are merged in this order (sorted input files
    and sorted runs); ``total`` is the number of events they hold."""

    inputs: list[InputFile]
    scans: list[FileScan]
    sources: list[InputFile]
    total: int
    skipped: list[Path] = field(default_factory=list)
    sorted_inputs: list[Path] = field(default_factory=list)  # inputs sorted into runs

    @property
    def first(self) -> datetime | None:
        times = [s.first for s in self.scans if s.first is not None]
        return min(times) if times else None

    @property
    def last(self) -> datetime | None:
        times = [s.last for s in self.scans if s.last is not None]
        return max(times) if times else None


def merged(
    sources: Sequence[InputFile],
    positions: Sequence[Position],
    validator: EventValidator,
    on_invalid: InvalidHandler,
) -> Iterator[Item]:
    """Every event of ``sources`` from ``positions`` on, in replay order."""
    streams = [
        read_events(source, index, validator, on_invalid, positions[index], ordered=True)
        for index, source in enumerate(sources)
    ]
    if len(streams) == 1:
        return streams[0]
    # Items compare by (event_time, source index, offset): never equal, so the events
    # themselves are never compared, and ties keep the input order.
    return heapq.merge(*streams)


def plan_replay(
    inputs: list[InputFile],
    spill_dir: Path,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    *,
    sort_buffer: int = DEFAULT_SORT_BUFFER,
    fan_in: int = FAN_IN,
    on_status: Callable[[str], object] | None = None,
    skipped: list[Path] | None = None,
) -> Plan:
    """Scan the inputs, sort the unsorted ones into runs, and bound the fan-in."""
    status = on_status or (lambda _message: None)
    scans = []
    for number, file in enumerate(inputs, start=1):
        status(f"scanning {file.path.name} ({number}/{len(inputs)})")
        scans.append(scan_file(file))
    sources: list[InputFile] = []
    counts: list[int] = []
    sorted_inputs = []
    for index, (file, scan) in enumerate(zip(inputs, scans, strict=True)):
        if scan.in_order:
            sources.append(file)
            counts.append(scan.events)
            continue
        status(f"sorting {file.path.name}: out of time order from line {scan.first_disorder}")
        sorted_inputs.append(file.path)
        for run, count in sort_into_runs(
            file, spill_dir, f"run-{index:05d}", validator, on_invalid, sort_buffer
        ):
            sources.append(run)
            counts.append(count)
    level = 0
    while len(sources) > fan_in:
        level += 1
        status(f"merging {len(sources)} sorted streams, {fan_in} at a time")
        sources, counts = _merge_groups(
            sources, counts, spill_dir, level, validator, on_invalid, fan_in
        )
    return Plan(inputs, scans, sources, sum(counts), skipped or [], sorted_inputs)


def sort_into_runs(
    file: InputFile,
    spill_dir: Path,
    prefix: str,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    sort_buffer: int,
) -> Iterator[tuple[InputFile, int]]:
    """Sorted runs of ``file``'s valid events, ``sort_buffer`` events each."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    chunk: list[tuple[datetime, int, bytes]] = []
    runs = 0
    for at, _, _, line, event in read_events(file, 0, validator, on_invalid, START):
        chunk.append((at, line, encode_event(event)))
        if len(chunk) >= sort_buffer:
            yield _write_run(chunk, spill_dir / f"{prefix}-{runs:05d}.jsonl")
            runs += 1
            chunk = []
    if chunk:
        yield _write_run(chunk, spill_dir / f"{prefix}-{runs:05d}.jsonl")


def _write_run(chunk: list[tuple[datetime, int, bytes]], path: Path) -> tuple[InputFile, int]:
    chunk.sort(key=lambda entry: (entry[0], entry[1]))
    with path.open("wb") as out:
        for _, _, encoded in chunk:
            out.write(encoded)
            out.write(b"\n")
    return InputFile.at(path, "jsonl"), len(chunk)


def _merge_groups(
    sources: list[InputFile],
    counts: list[int],
    spill_dir: Path,
    level: int,
    validator: EventValidator,
    on_invalid: InvalidHandler,
    fan_in: int,
) -> tuple[list[InputFile], list[int]]:
    """Merge consecutive groups of ``fan_in`` streams into one run each (order kept).

    Each source is read once here and never again, so an input file's invalid lines are
    reported here (runs hold valid events only).
    """
    spill_dir.mkdir(parents=True, exist_ok=True)
    merged_sources, merged_counts = [], []
    for group_start in range(0, len(sources), fan_in):
        group = sources[group_start : group_start + fan_in]
        path = spill_dir / f"merge-{level:02d}-{group_start // fan_in:05d}.jsonl"
        written = 0
        with path.open("wb") as out:
            stream = merged(group, [START] * len(group), validator, on_invalid)
            for *_, event in stream:
                out.write(encode_event(event))
                out.write(b"\n")
                written += 1
        merged_sources.append(InputFile.at(path, "jsonl"))
        merged_counts.append(written)
    return merged_sources, merged_counts
