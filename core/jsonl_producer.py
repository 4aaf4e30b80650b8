"""Sending a file of JSON-lines events to Kafka: each line validated, invalid lines
reported by line number (and, if asked, dead-lettered with their reason)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from core.dlq import DeadLetter
from core.events import EventValidationError, TopicKind
from core.producer import EventProducer

_SHOW_INVALID = 20  # invalid lines listed one by one; the rest are counted
_CLOCK_EVERY = 10_000  # re-read the clock for the future-time check every N lines


@dataclass
class ProduceReport:
    """What happened to each input line."""

    lines: int = 0
    sent: int = 0
    invalid: list[EventValidationError] = field(default_factory=list)
    invalid_by_code: Counter[str] = field(default_factory=Counter)

    @property
    def invalid_count(self) -> int:
        return sum(self.invalid_by_code.values())


def produce_lines(
    stream: BinaryIO,
    producer: EventProducer,
    kind: TopicKind | None,
    *,
    to_dlq: bool = False,
    source_name: str = "",
    on_progress: Callable[[int], object] | None = None,
) -> ProduceReport:
    """Validate and send every non-blank line; report invalid lines with their numbers.

    An invalid line is skipped (or, with ``to_dlq``, written to the dead-letter topic with
    its reason) and producing goes on with the next line.
    """
    report = ProduceReport()
    now = datetime.now(UTC)
    send_json = producer.send_json
    for number, line in enumerate(stream, start=1):
        if number % _CLOCK_EVERY == 0:
            now = datetime.now(UTC)
            if on_progress is not None:
                on_progress(stream.tell() if stream.seekable() else number)
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        report.lines += 1
        try:
            send_json(line, kind, now)
            report.sent += 1
        except EventValidationError as exc:
            error = exc.at_line(number)
            report.invalid_by_code[error.code] += 1
            if len(report.invalid) < _SHOW_INVALID:
                report.invalid.append(error)
            if to_dlq:
                producer.send_dead_letter(
                    DeadLetter(
                        value=line,
                        reason=error.reason,
                        code=error.code,
                        field=error.field,
                        source_file=source_name,
                        source_offset=number,
                    )
                )
    return report
