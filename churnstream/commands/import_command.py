"""``churnstream import online-retail|sparkify``: turn users' own data files into canonical
events.

Each format is one command on :data:`import_app`. Events go to a JSON-lines file
(``churnstream replay`` reads it) or, for Sparkify, stdout; rejected rows to a reject file
with their line number and reason; the data-quality report to the terminal (stderr) or,
with ``--json``, to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

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

from churnstream.commands.shared import (
    JsonReportOption,
    QuietOption,
    beside_output,
    fail,
)
from offline.importers.sparkify import DEFAULT_SESSION_GAP_S, SparkifyReport
from offline.importers.sparkify_files import Reject, SparkifyFormatError, import_sparkify

if TYPE_CHECKING:
    from offline.importers.common import ImportReport

_SHOW_REJECTS = 10  # rejected lines listed one by one in the Sparkify summary

import_app = typer.Typer(no_args_is_help=True)

OutOption = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        metavar="FILE",
        help="Events as JSON lines ('-' for stdout). Default: <input name>.events.jsonl here.",
    ),
]
RejectsOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Rejected rows as JSON lines (line, reason, record). Default: <out>.rejects.jsonl.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the data-quality report as one JSON object.")
]


def default_paths(source: Path, out: str | None, rejects: Path | None) -> tuple[str, Path | None]:
    """Where events and rejects go when not given: next to each other in the current
    directory, named after the input; no reject file when events go to stdout.

    >>> default_paths(Path("data/online_retail.parquet"), None, None)
    ('online_retail.events.jsonl', PosixPath('online_retail.events.jsonl.rejects.jsonl'))
    >>> default_paths(Path("x.csv"), "-", None)
    ('-', None)
    """
    out = out or f"{source.name.split('.')[0]}.events.jsonl"
    if rejects is None and out != "-":
        rejects = Path(f"{out}.rejects.jsonl")
    return out, rejects


def _finish(report: ImportReport, out: str, rejects: Path | None, as_json: bool) -> None:
    from offline.importers.common import report_json

    err = Console(stderr=True)
    if as_json:
        typer.echo(report_json(report))
        return
    lines = report.summary_lines()
    lines.append(f"events to   {'stdout' if out == '-' else out}")
    if report.rows_rejected:
        lines.append(f"rejects to  {rejects if rejects else '- (none; use --rejects FILE)'}")
    err.print("\n".join(lines), highlight=False)


@import_app.command("online-retail")
def online_retail_command(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="Online Retail invoice lines: CSV or Parquet (UCI or II columns)."
        ),
    ],
    out: OutOption = None,
    rejects: RejectsOption = None,
    timezone: Annotated[
        str, typer.Option(help="Time zone of InvoiceDate (the shop's local time).")
    ] = "Europe/London",
    json_output: JsonOption = False,
) -> None:
    """Import Online Retail invoice lines: one purchase or refund event per invoice.

    Rows without a customer, with a price <= 0 or otherwise unusable go to the reject file
    with their line number and reason; the report lists them by reason.
    """
    from offline.importers.common import ImportFormatError, RejectWriter, write_events_jsonl
    from offline.importers.online_retail import import_online_retail

    err = Console(stderr=True)
    out, rejects = default_paths(file, out, rejects)
    try:
        with err.status(f"importing {file}"), RejectWriter(rejects) as writer:
            events, report = import_online_retail(file, writer, timezone=timezone)
            write_events_jsonl(events, out)
    # OSError, ValueError: e.g. an unknown time zone, an unwritable --out
    except (ImportFormatError, OSError, ValueError) as exc:
        raise fail(exc, 2) from None
    _finish(report, out, rejects, json_output)


@import_app.command("sparkify")
def sparkify_command(
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
    json_output: JsonReportOption = False,
    quiet: QuietOption = False,
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
    rejects = rejects or beside_output(out, ".rejects.jsonl")
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
            raise fail(exc, 2) from None
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
        _print_sparkify_summary(err, report, elapsed, out, rejects, shown)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reported by the importer, with the file name


def _print_sparkify_summary(
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
