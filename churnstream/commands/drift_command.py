"""``churnstream drift``: compare live features with the champion's reference sample."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from churnstream.commands.shared import flag, parse_time

if TYPE_CHECKING:
    from monitoring.drift import DriftOutcome

log = logging.getLogger(__name__)

EXIT_SKIPPED = 3


def drift_command(
    once: bool = flag("--once", help="Run one report and exit (default: keep running)."),
    json_output: bool = flag("--json", help="Print each result as one JSON object on stdout."),
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="TIME",
            help="Compute live features at this ISO time instead of now (e.g. to check "
            "replayed history); customers are still those scored recently.",
        ),
    ] = None,
) -> None:
    """Compare recently scored customers' live features (and scores) with the champion
    model's reference sample using Evidently; save the report (HTML + JSON) in
    CHURN_REPORTS_DIR, where the API serves it at /reports/drift.

    Prints the drift share and the drifted features. Without --once, a report is made every
    CHURN_MONITOR_INTERVAL_SECONDS until Ctrl-C. Exit status 3: nothing to compare (no
    champion, no reference sample or no recently scored customers).
    """
    from core.redis_client import connect_redis
    from core.settings import get_settings
    from monitoring.drift import run_drift

    settings = get_settings()
    as_of_s = parse_time(as_of, "--as-of").timestamp() if as_of is not None else None
    client = connect_redis(settings)
    err = Console(stderr=True)
    while True:
        with err.status("comparing live features with the reference sample"):
            outcome = run_drift(settings, client, as_of=as_of_s)
        _show(outcome, json_output)
        if once:
            if outcome.skipped:
                raise typer.Exit(EXIT_SKIPPED)
            return
        try:
            time.sleep(settings.monitor_interval_seconds)
        except KeyboardInterrupt:
            return


def _show(outcome: DriftOutcome, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(outcome.as_dict(), sort_keys=True, default=str))
        return
    console = Console()
    if outcome.skipped:
        console.print(f"[yellow]no drift report:[/] {outcome.skipped}", highlight=False)
        return
    summary = outcome.summary
    assert summary is not None and outcome.report is not None
    verdict = "[red]dataset drift[/]" if summary.dataset_drift else "[green]no dataset drift[/]"
    console.print(
        f"drift share {summary.drift_share:.1%} of {len(summary.features)} features "
        f"(threshold {summary.share_threshold:.0%}): {verdict}",
        highlight=False,
    )
    if summary.score is not None:
        console.print(
            f"score distribution {'[red]drifted[/]' if summary.score.drifted else 'stable'} "
            f"({summary.score.method} {summary.score.score:.4g})",
            highlight=False,
        )
    console.print(
        f"compared {summary.rows_current:,} live rows with {summary.rows_reference:,} "
        f"reference rows of model {outcome.model_version} in {outcome.seconds:.1f} s",
        highlight=False,
    )
    if summary.drifted_features:
        table = Table(title="drifted features", show_edge=False, title_justify="left")
        table.add_column("feature")
        table.add_column("method")
        table.add_column("statistic", justify="right")
        table.add_column("threshold", justify="right")
        for column in summary.features:
            if column.drifted:
                table.add_row(
                    column.column,
                    column.method,
                    f"{column.score:.4g}" if column.score is not None else "-",
                    f"{column.threshold:g}" if column.threshold is not None else "-",
                )
        console.print(table)
    else:
        console.print("drifted features: none")
    console.print(
        f"report {outcome.report.entry['id']}: {outcome.report.html_path} "
        f"({outcome.report.html_bytes / 1e6:.1f} MB)",
        highlight=False,
    )
