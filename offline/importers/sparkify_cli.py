"""``churnstream import sparkify``: Sparkify event logs to a JSON-lines file of events.

Events go to ``--out`` (or stdout), rejected lines to ``--rejects`` (by default
``<out>.rejects.jsonl``), progress and the summary to stderr (or, with ``--json``, the
report as one JSON object to stdout).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from offline.importers.sparkify import DEFAULT_SESSION_GAP_S, SparkifyReport
from offline.importers.sparkify_files import Reject, SparkifyFormatError, import_sparkify

_SHOW_REJECTS = 10  # rejected lines listed one by one in the summary


def default_rejects_path(out: str | None) -> Path | None:
    """``<out>.rejects.jsonl`` for a regular output file; ``None`` for stdout.

    >>> str(default_rejects_path("events.jsonl")), default_rejects_path("-")
    ('events.jsonl.rejects.jsonl', None)
    """
    if out is None or out == "-":
        return None
    path = Path(out)
    if path.exists() and not path.is_file():
        return None
    return Path(f"{out}.rejects.jsonl")


def import_sparkify_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="Sparkify event logs: JSON lines, one page request per line (.gz is fine).",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", metavar="FILE", help="JSON-lines output of events; '-' for stdout."
        ),
    ] = "-",
    rejects: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Rejected lines with line number and reason (JSON lines). "
            "Default: <out>.rejects.jsonl when --out is a file.",
        ),
    ] = None,
    session_gap: Annotated[
        int,
        typer.Option(
            "--session-gap",
            metavar="MINUTES",
            min=1,
            help="A user's session also ends after this many minutes without a row.",
        ),
    ] = DEFAULT_SESSION_GAP_S // 60,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
) -> None:
    """Convert Sparkify event logs into canonical activity events (JSON lines).

    Pages become plays, likes, dislikes, playlist additions, friend requests, help and
    error pages, upgrades, downgrades and cancellations (any other page is a page view);
    sessions get a derived session_start and session_end. Event ids are deterministic, so
    importing the same log again gives the same events. Rows without a userId and
    malformed lines go to the reject file with their line number and reason; the import
    goes on. A file that cannot be read or is not a Sparkify log stops the import.
    """
    to_stdout = out == "-"
    if json_output and to_stdout:
        raise typer.BadParameter("--json prints the report on stdout; give --out FILE for events")
    rejects = rejects or default_rejects_path(out)
    err = Console(stderr=True, soft_wrap=True)
    total = sum(_size(path) for path in files)
    shown: list[Reject] = []
    started = time.perf_counter()
    with ExitStack() as stack:
        out_tmp = None if to_stdout else Path(f"{out}.partial")
        sink: IO[bytes] = (
            sys.stdout.buffer if out_tmp is None else stack.enter_context(out_tmp.open("wb"))
        )
        reject_sink = stack.enter_context(rejects.open("w")) if rejects is not None else None
        progress = Progress(
            TextColumn("[bold]importing"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet or json_output,
        )
        stack.enter_context(progress)
        task = progress.add_task("import", total=total)

        def emit(encoded: bytes) -> None:
            sink.write(encoded)
            sink.write(b"\n")

        def reject(row: Reject) -> None:
            if reject_sink is not None:
                reject_sink.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
            if len(shown) < _SHOW_REJECTS:
                shown.append(row)

        try:
            report = import_sparkify(
                files,
                emit,
                reject,
                session_gap_s=session_gap * 60,
                on_progress=lambda done: progress.update(task, completed=done),
            )
        except SparkifyFormatError as exc:
            progress.stop()
            stack.close()
            for leftover in (out_tmp, rejects):
                if leftover is not None:
                    leftover.unlink(missing_ok=True)
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except BrokenPipeError:  # e.g. `| head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
    if out_tmp is not None:
        out_tmp.replace(out)
    elapsed = time.perf_counter() - started

    if json_output:
        document = {
            **report.to_dict(),
            "out": out,
            "rejects_file": str(rejects) if rejects else None,
            "seconds": round(elapsed, 2),
        }
        typer.echo(json.dumps(document))
    elif not quiet:
        _print_summary(err, report, elapsed, out, rejects, shown)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reported by the importer, with the file name


def _print_summary(
    console: Console,
    report: SparkifyReport,
    elapsed: float,
    out: str,
    rejects: Path | None,
    shown: list[Reject],
) -> None:
    data = report.to_dict()
    span = f"{data['first_event_time']} .. {data['last_event_time']}" if report.rows else "-"
    lines = [
        f"rows        {report.rows:,} read in {elapsed:.1f} s",
        f"events      {report.events:,} to {'stdout' if out == '-' else out}",
        f"customers   {len(report.customers):,}, {report.sessions:,} sessions",
        f"time span   {span}",
        f"rejected    {report.rejected:,}"
        + (
            " (" + ", ".join(f"{c}={n:,}" for c, n in report.rejects_by_code.most_common()) + ")"
            if report.rejected
            else ""
        )
        + (
            f" to {rejects}"
            if rejects is not None
            else (" (use --rejects FILE to keep them)" if report.rejected else "")
        ),
    ]
    if report.late_rows:
        lines.append(
            f"late rows   {report.late_rows:,} rows were older than events already written: "
            "the output is not fully in time order"
        )
    console.print("\n".join(lines), highlight=False)
    for row in shown:
        console.print(f"  rejected {row}", highlight=False, markup=False)
    table = Table(title="events by type", show_edge=False, title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    for event_type, count in report.events_by_type.most_common():
        table.add_row(event_type, f"{count:,}")
    console.print(table)
