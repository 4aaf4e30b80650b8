"""``churnstream targets``: whom to contact today, as a table, a CSV file or JSON for a CRM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from churnstream.commands.shared import flag

if TYPE_CHECKING:  # the scoring stack loads only when the command runs
    from core.contacts import ContactList


def targets_command(
    budget: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Most the campaign may spend (contacts plus the accepters' incentives), in "
            "the events' currency. Default: no limit.",
        ),
    ] = None,
    max_contacts: Annotated[
        int, typer.Option("--max-contacts", min=1, help="Most customers listed.")
    ] = 100,
    contact_cost: Annotated[
        float | None, typer.Option(min=0, help="Cost of one contact (CHURN_CONTACT_COST).")
    ] = None,
    incentive: Annotated[
        float | None,
        typer.Option(min=0, help="Paid to each churner who accepts (CHURN_RETENTION_INCENTIVE)."),
    ] = None,
    save_rate: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Share of contacted churners kept (CHURN_SAVE_RATE)."),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", metavar="PATH", help="Also write the list to this CSV file."),
    ] = None,
    json_output: bool = flag("--json", help="Print the list as one JSON object on stdout."),
) -> None:
    """List the customers to contact today: a positive expected net gain of contacting
    (score x save rate x (value - incentive) - contact cost), best first, within the budget.

    Reads the scores and values the worker stored; the reasons are the champion's top
    contributions now. Exits 1 without a champion model.
    """
    from core.contact_csv import write_csv
    from core.contacts import contact_list, contact_list_document
    from core.keys import Keys
    from core.redis_client import connect_redis
    from core.registry import ModelRegistry
    from core.settings import get_settings, scoring_clock
    from core.store import FeatureStore
    from core.targeting import Campaign
    from serving.config import get_api_settings

    settings = get_settings()
    client = connect_redis(settings)
    model = ModelRegistry(settings, client).load_champion()
    if model is None:
        typer.echo("no champion model: train and promote one first (churnstream train)", err=True)
        raise typer.Exit(1)
    try:
        campaign = Campaign.from_settings(settings).with_overrides(
            contact_cost=contact_cost, incentive=incentive, save_rate=save_rate
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    found = contact_list(
        FeatureStore(client, Keys.of(settings)),
        campaign,
        budget=budget,
        max_contacts=max_contacts,
        model=model,
        now=scoring_clock(settings)(),
    )
    document = contact_list_document(found, get_api_settings().retention_actions)
    if csv_path is not None:
        write_csv(csv_path, document)
    if json_output:
        typer.echo(json.dumps(document))
        return
    _print(found, document, csv_path)


def _print(found: ContactList, document: dict[str, Any], csv_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from core.contact_csv import csv_rows

    console = Console()
    c = found.campaign
    table = Table(
        title=f"customers to contact (contact {c.contact_cost:g}, incentive {c.incentive:g}, "
        f"save rate {c.save_rate:g})",
        show_edge=False,
    )
    text_columns = {"customer", "band", "action", "top reason"}
    for name in ("#", "customer", "score", "band", "value", "exp. loss", "gain", "action",
                 "top reason"):  # fmt: skip
        table.add_column(name, justify="left" if name in text_columns else "right")
    for row in csv_rows(document):
        table.add_row(
            str(row["rank"]),
            row["customer_id"],
            f"{row['score']:.3f}",
            row["band"] or "",
            f"{row['value']:,.2f}",
            f"{row['expected_loss']:,.2f}",
            f"{row['gain']:,.2f}",
            row["action"] or "",
            row["reasons"].split("; ")[0],
        )
    console.print(table)
    budget = "no budget" if found.budget is None else f"budget {found.budget:,.2f}"
    console.print(
        f"{len(found.contacts):,} of {found.candidates:,} customers with a positive expected "
        f"gain ({found.scanned:,} scored); expected spend {found.total_spend:,.2f} ({budget}), "
        f"expected net gain {found.total_gain:,.2f}",
        highlight=False,
    )
    if csv_path is not None:
        console.print(f"written to {csv_path}", highlight=False)
