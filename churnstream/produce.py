"""``churnstream produce``: send JSON-lines events from a file or stdin to Kafka."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from core.dlq import DeadLetter

if TYPE_CHECKING:
    from core.events import EventValidationError, TopicKind
    from core.producer import EventProducer

_SHOW_INVALID = 20  # invalid lines listed one by one; the rest are counted
_CLOCK_EVERY = 10_000  # re-read the clock for the future-time check every N lines


class TopicChoice(StrEnum):
    activity = "activity"
    transactions = "transactions"


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
    from core.events import EventValidationError

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


def produce(
    file: str = typer.Argument(
        "-", help="JSON-lines file of events, one per line; '-' reads standard input."
    ),
    topic: TopicChoice | None = typer.Option(
        None,
        "--topic",
        "-t",
        help="Only accept events of this topic's types. Without it each event goes to "
        "the topic its type belongs on.",
    ),
    to_dlq: bool = typer.Option(
        False, "--to-dlq", help="Send invalid lines to the dead-letter topic with the reason."
    ),
    create_topics: bool = typer.Option(
        True, "--create-topics/--no-create-topics", help="Create missing topics first."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Validate events and send them to Kafka, keyed by customer id.

    Invalid lines are reported with their line number and the field at fault, and skipped
    (or dead-lettered with --to-dlq); every valid line is still sent. Exits 1 when any
    line was invalid or any event failed delivery.
    """
    from core.producer import EventProducer
    from core.settings import get_settings

    console = Console(stderr=True, soft_wrap=True)
    settings = get_settings()
    kind: TopicKind | None = topic.value if topic else None  # type: ignore[assignment]
    source = sys.stdin.buffer if file == "-" else _open(file)
    total = Path(file).stat().st_size if file != "-" else None
    progress = Progress(
        TextColumn("[bold]producing"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or total is None,
    )
    with progress, EventProducer(settings, create_topics=create_topics) as producer:
        task = progress.add_task("produce", total=total)
        report = produce_lines(
            source,
            producer,
            kind,
            to_dlq=to_dlq,
            source_name="<stdin>" if file == "-" else file,
            on_progress=lambda done: progress.update(task, completed=done),
        )
        if total is not None:
            progress.update(task, completed=total)
    _print_summary(console, report, producer)
    stats = producer.stats
    if report.invalid_count or stats.failed or stats.in_flight:
        raise typer.Exit(1)


def _open(file: str) -> BinaryIO:
    try:
        return open(file, "rb")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror}") from None


def _print_summary(console: Console, report: ProduceReport, producer: EventProducer) -> None:
    stats = producer.stats
    console.print(
        f"lines={report.lines} sent={report.sent} delivered={stats.delivered} "
        f"failed={stats.failed} undelivered={stats.in_flight} invalid={report.invalid_count} "
        f"dead_lettered={stats.dead_lettered}"
    )
    for error in report.invalid:
        console.print(f"  invalid {error}", highlight=False, markup=False)
    hidden = report.invalid_count - len(report.invalid)
    if hidden > 0:
        by_code = ", ".join(f"{code}={n}" for code, n in report.invalid_by_code.most_common())
        console.print(f"  ... and {hidden} more invalid lines ({by_code})")
    for error_text in stats.errors:
        console.print(f"  delivery error: {error_text}", highlight=False, markup=False)
