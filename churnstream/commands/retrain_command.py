"""``churnstream retrain``: retrain now, or queue the request for the running monitor."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from churnstream.commands.shared import flag


def retrain_command(
    reason: Annotated[
        str, typer.Option(help="Why (recorded with the decision).")
    ] = "manual retrain",
    queue: bool = flag(
        "--queue", help="Only queue the request for the running monitor instead of training here."
    ),
    json_output: bool = flag("--json", help="Print the decision as one JSON object."),
) -> None:
    """Retrain now on the event archive's latest window; the promotion gate decides whether
    the new model replaces the champion. The decision is recorded (GET /models).

    Exit status 1 when the retrain failed.
    """
    from core.decisions import RetrainRequest, push_retrain_request
    from core.keys import Keys
    from core.redis_client import connect_redis
    from core.settings import get_settings

    settings = get_settings()
    client = connect_redis(settings)
    request = RetrainRequest(reason=reason, requested_by="cli", trigger="manual")
    if queue:
        push_retrain_request(client, Keys.of(settings), request)
        typer.echo(f"retrain request queued at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        return
    from offline.retrain import retrain

    err = Console(stderr=True)
    with err.status("retraining") as status:

        def progress(message: str) -> None:
            status.update(message)
            err.print(f"[dim]{message}[/dim]", highlight=False)

        outcome = retrain(settings, client, request, progress=progress)
    decision = outcome.decision
    if json_output:
        typer.echo(json.dumps(asdict(decision), sort_keys=True, default=str))
    else:
        typer.echo(f"{decision.decision}: {decision.reason}")
        for key in ("candidate_roc_auc", "champion_roc_auc", "gate_rows"):
            if key in decision.metrics:
                typer.echo(f"  {key} {decision.metrics[key]}")
    if decision.decision == "retrain_failed":
        raise typer.Exit(1)
