"""What several commands share: option types, parsers of option values, the error exit.

Conventions: times on the command line are ISO 8601, UTC unless they carry an offset;
``-`` as a file name means standard input or output; errors go to stderr.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
JsonReportOption = Annotated[
    bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")
]
JsonOneOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def parse_time(text: str, param_hint: str | None = None) -> datetime:
    """An ISO 8601 date or datetime (``2026-01-01``, ``2026-01-01T06:00:00Z``, ``...+02:00``)
    as an aware UTC datetime; without an offset it is taken as UTC.

    >>> parse_time("2026-01-01").isoformat(), parse_time("2026-01-01T02:00+02:00").isoformat()
    ('2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')
    >>> parse_time("2026-03-01T01:00:00+01:00").timestamp()
    1772323200.0
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date or datetime (e.g. 2026-01-01 or 2026-01-01T00:00:00Z)",
            param_hint=param_hint,
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def beside_output(out: str | None, suffix: str) -> Path | None:
    """``<out><suffix>`` (a file kept next to the output) when ``out`` is a regular file;
    ``None`` for stdout, no file, or a special file such as ``/dev/null``.

    >>> str(beside_output("data/events.jsonl", ".truth.csv")), beside_output("-", ".x")
    ('data/events.jsonl.truth.csv', None)
    """
    if out is None or out == "-":
        return None
    path = Path(out)
    if path.exists() and not path.is_file():
        return None
    return Path(f"{out}{suffix}")


def print_error(message: object) -> None:
    """``error: <message>`` on stderr."""
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)


def fail(message: object, code: int = 1) -> typer.Exit:
    """Print ``error: <message>`` on stderr; return the exit to raise (``raise fail(...)``)."""
    print_error(message)
    return typer.Exit(code)


def flag(*names: str, help: str) -> Any:
    """A boolean option, off unless given: ``force: bool = flag("--force", help="...")``."""
    return typer.Option(False, *names, help=help)
