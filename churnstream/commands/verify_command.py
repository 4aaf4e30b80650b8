"""``churnstream verify``: recompute every customer from the event archive and compare with
Redis (online-offline consistency; the logic is in :mod:`offline.verify`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from churnstream.commands.shared import JsonReportOption, parse_time

if TYPE_CHECKING:
    from offline.verify import VerifyReport

EXIT_INCONSISTENT = 1
EXIT_NOTHING_TO_VERIFY = 2


def verify_command(
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Reference time of the feature comparison, ISO 8601 (UTC unless it carries "
            "an offset). Default: one second after the newest event at the watermark.",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="A feature differs when |offline - online| > tolerance x max(1, |values|).",
        ),
    ] = 1e-9,
    examples: Annotated[
        int, typer.Option(min=0, help="Customers to name per kind of problem.")
    ] = 20,
    json_output: JsonReportOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check that Redis holds exactly what the events the worker applied say.

    Recomputes every customer with the worker's code from the archive, up to each fence.

    Compares aggregates and features: mismatches, missing and extra customers, SMAPE.

    Exit status: 0 consistent; 1 inconsistent (or the worker moved on); 2 nothing to verify.
    """

    from core.archive import EventArchive
    from core.keys import Keys
    from core.redis_client import connect_redis
    from core.settings import get_settings
    from core.store import FeatureStore
    from core.topics import Topics
    from offline.verify import NothingToVerify, verify

    settings = get_settings()
    err = Console(stderr=True)
    reference = int(parse_time(at).timestamp()) if at is not None else None
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    archive = EventArchive(settings.archive_dir)
    progress = Progress(
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("archived events"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )
    task = progress.add_task("verify", total=None)

    def advance(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            report = verify(
                store,
                archive,
                Topics.from_settings(settings),
                settings.retention_days,
                at=reference,
                tolerance=tolerance,
                dedup_days=settings.dedup_days,
                max_examples=examples,
                progress=advance,
            )
    except NothingToVerify as exc:
        err.print(f"nothing to verify: {exc}", highlight=False)
        raise typer.Exit(EXIT_NOTHING_TO_VERIFY) from None
    if json_output:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print(report, Console(), str(settings.archive_dir))
    if not report.ok:
        raise typer.Exit(EXIT_INCONSISTENT)


def _print(report: VerifyReport, console: Console, archive_dir: str) -> None:
    data = report.as_dict()
    verdict = "[bold green]consistent[/]" if report.ok else "[bold red]INCONSISTENT[/]"
    console.print(f"{verdict}  ({report.seconds:.1f} s)")
    lines = [
        f"customers compared  {report.customers_compared:,}",
        f"mismatched          {report.mismatched:,} ({report.mismatch_rate:.4%}): "
        f"{report.state_mismatches:,} in aggregates, {report.feature_mismatches:,} in features",
        f"missing from Redis  {report.missing:,}",
        f"extra in Redis      {report.extra:,}",
        f"archive             {archive_dir}: {report.rows_at_watermark:,} rows at the "
        f"watermark ({report.events_counted:,} distinct events), "
        f"{report.rows_beyond_watermark:,} beyond it",
        f"reference time      {data['reference_time'] or '-'}",
    ]
    console.print("\n".join(lines), highlight=False, markup=False)
    if report.watermark_moved:
        console.print(
            "[yellow]the worker applied events while verify ran: stop it or wait until it is "
            "idle, then run verify again[/]"
        )
    for title, ids in (
        ("mismatched", report.mismatched_ids),
        ("missing from Redis", report.missing_ids),
        ("extra in Redis", report.extra_ids),
    ):
        if ids:
            console.print(f"{title}: {', '.join(ids)}", highlight=False, markup=False)
    for customer_id, differences in report.examples.items():
        console.print(f"[bold]{customer_id}[/]")
        for line in differences:
            console.print(f"  {line}", highlight=False, markup=False)
    table = Table(title="features (offline vs online)", show_edge=False, title_justify="left")
    table.add_column("feature")
    table.add_column("mismatched", justify="right")
    table.add_column("max |diff|", justify="right")
    table.add_column("SMAPE %", justify="right")
    differing = [f for f in report.features if f.mismatched or f.max_abs_diff]
    for feature in differing:
        table.add_row(
            feature.name,
            f"{feature.mismatched:,}",
            f"{feature.max_abs_diff:.6g}",
            f"{feature.smape_percent:.4f}",
        )
    if differing:
        console.print(table)
    elif report.features:
        console.print(
            f"all {len(report.features)} features equal for every compared customer "
            "(max |diff| 0, SMAPE 0 %)"
        )
