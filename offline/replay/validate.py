"""``replay --dry-run``: validate every event of the inputs without sending anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.events import EventValidator
from offline.replay.engine import EventTally, InvalidLog, ReplayFilters
from offline.replay.sources import InputFile, read_events


@dataclass
class DryRunReport(EventTally):
    """What a replay of these inputs would send (the ``matching`` events tallied by type
    and time). ``out_of_order`` maps each file whose times go backwards to the first line
    (or row) where they do: replay sorts those."""

    files: int = 0
    events: int = 0
    matching: int = 0
    out_of_order: dict[Path, int] = field(default_factory=dict)


def dry_run(
    inputs: list[InputFile],
    validator: EventValidator,
    invalid: InvalidLog,
    filters: ReplayFilters,
    on_progress: Callable[[int], object] | None = None,
) -> DryRunReport:
    """Read and validate every line of every input, in input order."""
    report = DryRunReport(files=len(inputs))
    for index, file in enumerate(inputs):
        previous: datetime | None = None
        for at, _, _, line, event in read_events(file, index, validator, invalid):
            report.events += 1
            if previous is not None and at < previous and file.path not in report.out_of_order:
                report.out_of_order[file.path] = line
            previous = at if previous is None or at > previous else previous
            if filters.active and not filters.accepts(event):
                continue
            report.matching += 1
            report.count(event.type, at)
            if on_progress is not None and not report.events % 4096:
                on_progress(report.events)
    if on_progress is not None:
        on_progress(report.events)
    return report
