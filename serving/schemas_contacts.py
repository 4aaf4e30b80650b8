"""Response bodies of the contact list (``GET /customers/to-contact``), with the examples
shown in the OpenAPI docs; conventions as in :mod:`serving.schemas`. Money is in the
events' currency."""

from __future__ import annotations

from pydantic import BaseModel, Field

from serving.schemas import EXPLANATIONS_EXAMPLE, Band, Explanation, example


class CampaignOut(BaseModel):
    contact_cost: float = Field(description="Cost of one contact.")
    incentive: float = Field(description="Paid to each contacted churner who accepts.")
    save_rate: float = Field(description="Share of contacted churners who accept and stay.")


class ContactItem(BaseModel):
    customer_id: str
    score: float = Field(description="The stored churn score the ranking used.")
    band: Band | None
    action: str | None = Field(description="The retention action for the band.")
    value: float = Field(description="Value over the model's label horizon (stored score).")
    expected_loss: float = Field(description="score x value.")
    gain: float = Field(
        description="Expected net gain of contacting: score x save_rate x (value - incentive) "
        "- contact_cost."
    )
    expected_spend: float = Field(
        description="Expected cost of the contact: contact_cost + score x save_rate x incentive."
    )
    reasons: list[Explanation] = Field(
        description="The champion's top contributions at request time."
    )


class ContactListResponse(BaseModel):
    """Customers to contact today, by expected net gain, within the budget."""

    model_config = example(
        {
            "campaign": {"contact_cost": 1.0, "incentive": 10.0, "save_rate": 0.3},
            "budget": 500.0,
            "max_contacts": 100,
            "count": 1,
            "candidates": 87,
            "scanned": 4339,
            "total_gain": 51.3,
            "total_spend": 3.85,
            "items": [
                {
                    "customer_id": "C00042",
                    "score": 0.95,
                    "band": "high",
                    "action": "retention offer",
                    "value": 180.5,
                    "expected_loss": 171.48,
                    "gain": 47.59,
                    "expected_spend": 3.85,
                    "reasons": EXPLANATIONS_EXAMPLE,
                }
            ],
        }
    )

    campaign: CampaignOut
    budget: float | None = Field(description="The budget asked for (null: none).")
    max_contacts: int
    count: int = Field(description="Contacts listed.")
    candidates: int = Field(description="Stored customers with a positive expected gain.")
    scanned: int = Field(description="Stored customers read.")
    total_gain: float
    total_spend: float
    items: list[ContactItem]
