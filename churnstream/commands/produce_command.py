"""``churnstream produce``: send JSON-lines events from a file or stdin to Kafka (the
sending is :func:`core.jsonl_producer.produce_lines`)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

if TYPE_CHECKING:
    from core.events import TopicKind
    from core.jsonl_producer import ProduceReport
    from core.producer import EventProducer


class TopicChoice(StrEnum):
    activity = "activity"
    transactions = "transactions"


def produce_command(
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
    from core.jsonl_producer import produce_lines
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
