"""Whom to contact today: stored customers ranked by the expected net gain of contacting
them, within a budget (:func:`core.contacts.contact_list`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from core.contacts import contact_list, contact_list_document
from core.targeting import Campaign
from serving.deps import ChampionDep, StateDep
from serving.routes import errors, json_response
from serving.schemas_contacts import ContactListResponse

router = APIRouter(tags=["customers"])

MAX_CONTACTS = 10_000


@router.get(
    "/customers/to-contact",
    response_model=ContactListResponse,
    responses=errors(e503="No champion model."),
    summary="Customers to contact today, by expected net gain, within a budget",
)
def customers_to_contact(
    state: StateDep,
    model: ChampionDep,
    budget: Annotated[
        float | None,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="Most the campaign may spend (its expected spend: contacts plus the "
            "incentives of accepters), in the events' currency. Default: no limit.",
        ),
    ] = None,
    max_contacts: Annotated[
        int, Query(ge=1, le=MAX_CONTACTS, description="Most customers listed.")
    ] = 100,
    contact_cost: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="Default CHURN_CONTACT_COST.")
    ] = None,
    incentive: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="Default CHURN_RETENTION_INCENTIVE."),
    ] = None,
    save_rate: Annotated[
        float | None, Query(ge=0, le=1, description="Default CHURN_SAVE_RATE.")
    ] = None,
) -> Response:
    """Customers with a positive expected net gain of contacting (score x save_rate x
    (value - incentive) - contact_cost), best first, while the campaign's expected spend
    stays within ``budget``, at most ``max_contacts``. Scores and values are the stored
    ones; reasons are the champion's top three contributions now. Reads every stored score
    (~3 µs per customer)."""
    campaign = Campaign.from_settings(state.settings).with_overrides(
        contact_cost=contact_cost, incentive=incentive, save_rate=save_rate
    )
    found = contact_list(
        state.store,
        campaign,
        budget=budget,
        max_contacts=max_contacts,
        model=model,
        now=state.risk.clock(),
    )
    return json_response(contact_list_document(found, state.api.retention_actions))
