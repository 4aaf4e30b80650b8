"""``churnstream replay``: send recorded events to Kafka (or the archive) in event-time order."""

from __future__ import annotations

import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from churnstream.commands.shared import QuietOption, fail, flag, parse_time
from core.events import EventValidator
from offline.replay import report as summary
from offline.replay.checkpoint import (
    Checkpoint,
    CheckpointError,
    delivered_since,
    exclusive,
    plan_id,
)
from offline.replay.engine import (
    ArchiveSink,
    Checkpointing,
    InvalidLog,
    KafkaSink,
    ReplayDeliveryError,
    ReplayFilters,
    ReplayStats,
    run_replay,
)
from offline.replay.ordering import DEFAULT_SORT_BUFFER, Plan, merged
from offline.replay.resume import discard_previous, new_replay, resumed_checkpoint
from offline.replay.sources import InputFile, ReplayInputError, discover
from offline.replay.validate import dry_run


def parse_speed(text: str) -> float | None:
    """``max`` (``None``: as fast as possible) or a positive factor of real time.

    >>> parse_speed("max"), parse_speed("60"), parse_speed("0.5")
    (None, 60.0, 0.5)
    """
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise typer.BadParameter(f"{text!r}: expected 'max' or a positive number (e.g. 60)")
    return value


def parse_customers(text: str | None) -> frozenset[str] | None:
    """Comma-separated customer ids, or ``@FILE`` with one id per line."""
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            ids = path.read_text().splitlines()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    else:
        ids = text.split(",")
    customers = frozenset(i.strip() for i in ids if i.strip())
    if not customers:
        raise typer.BadParameter(f"{text!r} names no customer id")
    return customers


def replay_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="Event files (JSON lines, optionally .gz, or archive Parquet) or folders.",
        ),
    ],
    speed: Annotated[
        str,
        typer.Option(metavar="max|N", help="'max', or N times real time (event-time gaps / N)."),
    ] = "max",
    from_: Annotated[
        str | None,
        typer.Option("--from", metavar="TIME", help="Only events at or after this time (UTC)."),
    ] = None,
    to: Annotated[
        str | None, typer.Option(metavar="TIME", help="Only events before this time (UTC).")
    ] = None,
    customers: Annotated[
        str | None,
        typer.Option(metavar="IDS|@FILE", help="Only these customers: c1,c2 or @file."),
    ] = None,
    dry_run_only: bool = flag("--dry-run", help="Validate every event and report; send nothing."),
    resume: bool = flag(
        "--resume", help="Continue an interrupted replay of the same inputs and options."
    ),
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Checkpoint file (default: <CHURN_RUN_DIR>/replay/<plan id>.json).",
        ),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Also write the events to the event archive in DIR."),
    ] = None,
    kafka: Annotated[
        bool,
        typer.Option("--kafka/--no-kafka", help="Send to Kafka (default), or only archive."),
    ] = True,
    rejects: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write invalid lines with their reason here."),
    ] = None,
    sort_buffer: Annotated[
        int,
        typer.Option(metavar="N", min=1000, help="Events held in memory to sort a file."),
    ] = DEFAULT_SORT_BUFFER,
    checkpoint_seconds: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0.1,
            help="How often delivery is confirmed and the checkpoint written.",
        ),
    ] = 2.0,
    json_output: bool = flag("--json", help="Print the summary as one JSON object on stdout."),
    quiet: QuietOption = False,
) -> None:
    """Replay recorded events into Kafka in event-time order (per customer, guaranteed).

    Files are read as streams: any size in constant memory; a file not in time order is
    sorted on disk first. Progress is checkpointed after Kafka confirms delivery, so after
    an interruption (Ctrl-C, a crash, a kill) --resume continues without sending anything
    twice. Replaying the same events again changes nothing downstream: the worker
    recognises event ids it has seen. Exits 1 when any line was invalid or any event
    failed delivery.
    """
    from core.settings import get_settings

    err = Console(stderr=True, soft_wrap=True)
    show = not quiet and not json_output
    filters = ReplayFilters(
        parse_time(from_) if from_ else None,
        parse_time(to) if to else None,
        parse_customers(customers),
    )
    if filters.start is not None and filters.end is not None and filters.start >= filters.end:
        raise typer.BadParameter("--from must be before --to", param_hint="--from")
    pace = parse_speed(speed)
    if not kafka and archive is None and not dry_run_only:
        raise typer.BadParameter("--no-kafka needs --archive DIR: there would be no destination")
    try:
        inputs, skipped = discover(paths)
    except ReplayInputError as exc:
        raise fail(exc, 2) from None
    settings = get_settings()
    validator = EventValidator(
        settings.max_event_bytes, timedelta(seconds=settings.max_future_skew_seconds)
    )
    with ExitStack() as stack:
        reject_sink: IO[str] | None = (
            stack.enter_context(rejects.open("w")) if rejects is not None else None
        )
        invalid = InvalidLog(reject_sink)
        if dry_run_only:
            progress = stack.enter_context(_progress(err, "validating", not show))
            task = progress.add_task("validate", total=None)
            report = dry_run(
                inputs, validator, invalid, filters, lambda n: progress.update(task, completed=n)
            )
            progress.stop()
            summary.print_dry_run(err, report, invalid, rejects, skipped, json_output, quiet)
            raise typer.Exit(1 if invalid.count else 0)

        destination: dict[str, Any] = {
            "kafka": [settings.kafka_bootstrap_servers, settings.topic_prefix] if kafka else None,
            "archive": str(archive.resolve()) if archive else None,
        }
        identity = {
            "inputs": [str(f.path.resolve()) for f in inputs],
            "filters": filters.identity(),
            "destination": destination,
        }
        pid = plan_id(identity)
        path = checkpoint or settings.run_dir / "replay" / f"{pid}.json"
        try:
            stack.enter_context(exclusive(path))
            state, sources, plan = _start(
                path, pid, resume, inputs, skipped, validator, invalid, sort_buffer, err, show
            )
        except (CheckpointError, ReplayInputError) as exc:
            raise fail(exc, 2) from None
        if state.complete:
            err.print(
                f"this replay completed at {state.updated_at}: {state.delivered:,} events "
                f"delivered; nothing to resume ({path})",
                highlight=False,
            )
            return

        sinks: list[KafkaSink | ArchiveSink] = []
        delivered: Counter[str] = Counter()
        if kafka:
            try:
                sink = _kafka_sink(settings)
            except KafkaException as exc:
                where = settings.kafka_bootstrap_servers
                raise fail(f"cannot use Kafka at {where}: {exc}", 2) from None
            sinks.append(sink)
            if resume:
                from core.kafka_client import client_config

                with err.status("reading what reached Kafka after the checkpoint"):
                    delivered = delivered_since(
                        client_config(settings), state.topic_ends, sink.admin
                    )
        if archive is not None:
            from core.archive import EventArchive

            sinks.append(ArchiveSink(EventArchive(archive)))

        progress = stack.enter_context(_progress(err, "replaying", not show))
        task = progress.add_task("replay", total=state.total, completed=state.read)
        read_before = state.read

        def on_progress(stats: ReplayStats) -> None:
            progress.update(task, completed=read_before + stats.read)

        stream = merged(sources, state.positions, validator, invalid)
        try:
            with _stop_on_signals() as stop_requested:
                stats = run_replay(
                    stream,
                    sinks,
                    filters=filters,
                    speed=pace,
                    checkpointing=Checkpointing(path, state, checkpoint_seconds),
                    delivered_before=delivered,
                    on_progress=on_progress,
                    should_stop=stop_requested,
                )
        except ReplayDeliveryError as exc:
            progress.stop()
            raise fail(
                f"{exc}. The checkpoint ({path}) stays before them; "
                "run the same command with --resume to send what is missing."
            ) from None
        except ReplayInputError as exc:
            progress.stop()
            raise fail(exc, 2) from None
        progress.stop()
        if state.complete and state.spill_dir:
            shutil.rmtree(state.spill_dir, ignore_errors=True)
    summary.print_replay(
        err, stats, state, plan, invalid, sinks, path, rejects, json_output, quiet, resume
    )
    if stats.interrupted:
        raise typer.Exit(130)
    if invalid.count:
        raise typer.Exit(1)


def _start(
    path: Path,
    pid: str,
    resume: bool,
    inputs: list[InputFile],
    skipped: list[Path],
    validator: EventValidator,
    invalid: InvalidLog,
    sort_buffer: int,
    err: Console,
    show: bool,
) -> tuple[Checkpoint, list[InputFile], Plan | None]:
    """The checkpoint to continue from, the sources to merge, and the plan (new runs)."""
    if resume:
        state = resumed_checkpoint(path, pid)
        return state, state.source_files(), None
    previous = discard_previous(path)
    if previous is not None and not previous.complete:
        err.print(
            f"an interrupted replay of these inputs was found ({previous.delivered:,} of "
            f"{previous.total:,} events delivered); starting over. Use --resume to "
            "continue it instead.",
            highlight=False,
        )
    with err.status("planning") if show else nullcontext() as status:
        state, plan = new_replay(
            path,
            pid,
            inputs,
            skipped,
            validator,
            invalid,
            sort_buffer=sort_buffer,
            on_status=status.update if status is not None else None,
        )
    return state, plan.sources, plan


def _kafka_sink(settings: Any) -> KafkaSink:
    from confluent_kafka.admin import AdminClient

    from core.kafka_client import client_config
    from core.producer import EventProducer

    return KafkaSink(EventProducer(settings), AdminClient(client_config(settings)))


class _CountColumn(ProgressColumn):
    """``done/total events`` (just ``done`` while the total is unknown)."""

    def render(self, task: Task) -> Text:
        total = f"/{task.total:,.0f}" if task.total is not None else " events"
        return Text(f"{task.completed:,.0f}{total}")


class _RateColumn(ProgressColumn):
    """Events per second, over the last few seconds."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f}/s")


def _progress(console: Console, verb: str, disable: bool) -> Progress:
    return Progress(
        TextColumn(f"[bold]{verb}"),
        BarColumn(bar_width=20),
        _CountColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


@contextmanager
def _stop_on_signals() -> Iterator[Any]:
    """SIGINT/SIGTERM ask the replay to stop at the next event (and checkpoint); a second
    one stops at once."""
    requested = {"stop": False}

    def handler(signum: int, _frame: Any) -> None:
        if requested["stop"]:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        requested["stop"] = True
        print("stopping after the current event (again to force)", file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: requested["stop"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
