"""``churnstream import ...``: turn users' own data files into canonical events.

The root CLI mounts :data:`import_app` as ``churnstream import``; each format is one
command on it. Events go to a JSON-lines file (``churnstream replay`` reads it), rejected
rows to a reject file with their line number and reason, and the data-quality report to
the terminal (stderr) or, with ``--json``, to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from offline.importers.sparkify_cli import import_sparkify_command

if TYPE_CHECKING:
    from offline.importers.common import ImportReport

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
def online_retail(
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
    except ImportFormatError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:  # e.g. an unknown time zone, an unwritable --out
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    _finish(report, out, rejects, json_output)


import_app.command("sparkify")(import_sparkify_command)
