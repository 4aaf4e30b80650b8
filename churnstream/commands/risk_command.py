"""``churnstream risk CUSTOMER_ID``: a customer's live features, score, band and why."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from churnstream.commands.shared import JsonOneOption

if TYPE_CHECKING:
    from core.risk import RiskAssessment


def risk_command(
    customer_id: str = typer.Argument(..., help="The customer id, as in the events."),
    json_output: JsonOneOption = False,
) -> None:
    """Show a customer's churn risk now: live features, score, band, model and top reasons.

    Exits 1 when the customer is unknown.
    """
    from core.keys import Keys
    from core.redis_client import connect_redis
    from core.registry import ModelRegistry
    from core.risk import assess
    from core.settings import get_settings, scoring_clock
    from core.store import FeatureStore

    settings = get_settings()
    client = connect_redis(settings)
    store = FeatureStore(client, Keys.of(settings))
    model = ModelRegistry(settings, client).load_champion()
    result = assess(store, model, customer_id, scoring_clock(settings)())
    if result is None:
        typer.echo(f"unknown customer: {customer_id!r} has no events in the store", err=True)
        raise typer.Exit(1)
    if json_output:
        typer.echo(json.dumps(asdict(result), default=str))
        return
    _print(result)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print(result: RiskAssessment) -> None:
    console = Console()
    if result.score is None:
        console.print("[yellow]no champion model: features only[/]")
    else:
        console.print(
            f"[bold]{result.customer_id}[/]  risk [bold]{result.score:.3f}[/] "
            f"band [bold]{result.band}[/]  model {result.model_version}"
        )
    console.print(f"last event {_when(result.last_event_time)}, evaluated {_when(result.at)}")
    if result.top_contributions:
        reasons = Table(title="top reasons (log-odds contribution)", show_edge=False)
        reasons.add_column("feature")
        reasons.add_column("value", justify="right")
        reasons.add_column("contribution", justify="right")
        for name, contribution in result.top_contributions:
            reasons.add_row(name, f"{result.features[name]:.3f}", f"{contribution:+.3f}")
        console.print(reasons)
    features = Table(title="live features", show_edge=False)
    features.add_column("feature")
    features.add_column("value", justify="right")
    for name, value in result.features.items():
        features.add_row(name, f"{value:.3f}")
    console.print(features)
