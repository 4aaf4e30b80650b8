"""``churnstream simulate``: generate the simulator's events into a JSONL file, stdout or Kafka.

Progress and the closing summary go to stderr, so stdout carries nothing but events.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from churnstream.commands.shared import QuietOption, beside_output, flag, parse_time

if TYPE_CHECKING:
    from core.events import Event
    from core.producer import EventProducer
    from offline import simulator as sim

_PROGRESS_EVERY = 2048  # events between progress-bar refreshes


@dataclass
class _Tally:
    """What went by: counts per event type and the event-time span (UTC)."""

    by_type: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.by_type.values())


def simulate_command(
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    days: Annotated[int, typer.Option(min=1, help="Number of simulated days.")] = 60,
    start: Annotated[
        str,
        typer.Option(
            help="Start of day 0: an ISO date or datetime (UTC unless it carries an offset)."
        ),
    ] = "2026-01-01T00:00:00Z",
    seed: Annotated[
        int, typer.Option(help="Random seed; the same options give the same bytes.")
    ] = 42,
    drift_at: Annotated[
        int | None,
        typer.Option(
            "--drift-at",
            metavar="DAY",
            min=0,
            help="From this day index on, a product change shifts behaviour (drift).",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="JSONL output file, '-' for stdout. Default: stdout, unless --kafka is given.",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Ground-truth CSV (one row per customer). Default: <out>.truth.csv for a file.",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            metavar="EVENTS_PER_SEC",
            min=0.001,
            help="Pace emission to this many events per second (default: as fast as possible).",
        ),
    ] = None,
    kafka: bool = flag(
        "--kafka", help="Send the events to Kafka (settings from env), and to --out if given."
    ),
    quiet: QuietOption = False,
) -> None:
    """Simulate a music-streaming service whose customers churn: events plus ground truth.

    Events are JSON lines in event-time order; the truth CSV says who churned, when, and why.
    """
    from offline import simulator as sim

    try:
        config = sim.SimulationConfig(
            customers=customers, days=days, start=parse_time(start), seed=seed, drift_at=drift_at
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if out is None and not kafka:
        out = "-"
    to_stdout = out == "-"
    truth = truth or beside_output(out, ".truth.csv")
    err = Console(stderr=True)

    truths = sim.ground_truth(config)
    if truth is not None:
        sim.write_truth(truths, truth)

    tally = _Tally()
    started = time.perf_counter()
    with ExitStack() as stack:
        producer = stack.enter_context(_open_producer(config)) if kafka else None
        progress = None
        if not quiet and not to_stdout:
            progress = stack.enter_context(_progress_bar(err))
        events = _tap(sim.simulate(config), config, tally, producer, progress, rate)
        try:
            if out is None:
                for _ in events:
                    pass
            else:  # paced output is written line by line, so a reader sees it as it comes
                destination = sys.stdout.buffer if to_stdout else out
                chunk = 1 if rate is not None else 4096
                sim.write_jsonl(events, destination, chunk_events=chunk, flush=rate is not None)
        except BrokenPipeError:  # e.g. `| head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
    elapsed = time.perf_counter() - started

    if not quiet:
        _print_summary(err, config, truths, tally, elapsed, out, truth, producer)
    if producer is not None and producer.stats.failed:
        raise typer.Exit(1)


def _open_producer(config: sim.SimulationConfig) -> EventProducer:
    """An ``EventProducer``, after checking the events will not be rejected as future ones."""
    from core.producer import EventProducer
    from core.settings import get_settings

    settings = get_settings()
    latest = datetime.now(UTC) + timedelta(seconds=settings.max_future_skew_seconds)
    if config.end + timedelta(days=1) > latest:  # the last sessions may run past the end
        raise typer.BadParameter(
            f"the simulated period ends {config.end:%Y-%m-%d}, in the future; Kafka would "
            f"reject its later events. Use an earlier --start or fewer --days.",
            param_hint="--start",
        )
    return EventProducer(settings)


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[events]:>12,} events"),
        TextColumn("{task.fields[rate]:>10,.0f} events/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _tap(
    events: Iterator[Event],
    config: sim.SimulationConfig,
    tally: _Tally,
    producer: EventProducer | None,
    progress: Progress | None,
    rate: float | None,
) -> Iterator[Event]:
    """Pass events through, counting them, pacing to ``rate`` and sending them to Kafka."""
    from offline.simulator import DAY_S

    task = (
        progress.add_task("simulate", total=config.days, events=0, rate=0.0) if progress else None
    )
    started = time.monotonic()
    start_s = config.start.timestamp()
    count = 0
    for event in events:
        if rate is not None:
            delay = started + count / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if producer is not None:
            producer.send(event)
        tally.by_type[event.type] += 1
        if tally.first is None:
            tally.first = event.event_time
        tally.last = event.event_time
        count += 1
        if progress is not None and task is not None and count % _PROGRESS_EVERY == 0:
            day = min((event.event_time.timestamp() - start_s) / DAY_S, config.days)
            elapsed = max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=day, events=count, rate=count / elapsed)
        yield event
    if progress is not None and task is not None:
        elapsed = max(time.monotonic() - started, 1e-9)
        progress.update(task, completed=config.days, events=count, rate=count / elapsed)


def _print_summary(
    console: Console,
    config: sim.SimulationConfig,
    truths: list[sim.CustomerTruth],
    tally: _Tally,
    elapsed: float,
    out: str | None,
    truth: Path | None,
    producer: EventProducer | None,
) -> None:
    churners = [t for t in truths if t.churned]
    cancelled = sum(t.cancelled for t in churners)
    drift = sum(t.churn_cause == "drift" for t in churners)
    share = len(churners) / max(len(truths), 1)
    span = (
        f"{tally.first:%Y-%m-%d %H:%M:%S} .. {tally.last:%Y-%m-%d %H:%M:%S} UTC"
        if tally.first and tally.last
        else "-"
    )
    per_second = tally.total / max(elapsed, 1e-9)
    lines = [
        f"events      {tally.total:,} in {elapsed:.1f} s ({per_second:,.0f}/s)",
        f"customers   {len(truths):,}, {config.days} days from {config.start:%Y-%m-%d %H:%M} UTC"
        + (f", drift from day {config.drift_at}" if config.drift_at is not None else ""),
        f"churners    {len(churners):,} ({share:.1%}): {cancelled:,} cancelled, "
        f"{len(churners) - cancelled:,} went silent"
        + (f", {drift:,} caused by the drift" if config.drift_at is not None else ""),
        f"time span   {span}",
    ]
    if out is not None:
        lines.append(f"events to   {'stdout' if out == '-' else out}")
    lines.append(f"truth to    {truth if truth is not None else '- (none; use --truth FILE)'}")
    if producer is not None:
        stats = producer.stats
        lines.append(f"kafka       {stats.delivered:,} delivered, {stats.failed:,} failed")
        lines.extend(f"  {error}" for error in stats.errors)
    console.print("\n".join(lines), highlight=False)

    table = Table(title="events by type", show_edge=False, title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for event_type, count in tally.by_type.most_common():
        table.add_row(event_type, f"{count:,}", f"{count / max(tally.total, 1):.1%}")
    console.print(table)
