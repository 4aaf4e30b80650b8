"""``churnstream schema``: export or check the published event JSON Schemas."""

from __future__ import annotations

from pathlib import Path

import typer

from core.schema import SCHEMA_DIR, stale_schemas, write_schemas

schema_app = typer.Typer(no_args_is_help=True)


@schema_app.command("export")
def export_command(
    out: Path = typer.Option(SCHEMA_DIR, "--out", help="Directory to write the schemas to."),
) -> None:
    """Write the JSON Schema of each input topic (customer-activity, customer-transactions)."""
    for path in write_schemas(out):
        typer.echo(f"wrote {path}")


@schema_app.command("check")
def check_command(
    directory: Path = typer.Option(SCHEMA_DIR, "--dir", help="Directory holding the schemas."),
) -> None:
    """Exit 1 when the published schemas differ from the code's event contract."""
    stale = stale_schemas(directory)
    if stale:
        typer.echo(f"out of date: {', '.join(stale)} (run: churnstream schema export)", err=True)
        raise typer.Exit(1)
    typer.echo("schemas are up to date")
