"""A contact list as CSV for a CRM: one row per customer, best first, the reasons as
``feature (+0.532); …``. The document is :func:`core.contacts.contact_list_document`'s."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

CSV_COLUMNS = (
    "rank",
    "customer_id",
    "score",
    "band",
    "action",
    "value",
    "expected_loss",
    "gain",
    "expected_spend",
    "reasons",
)


def csv_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a contact list document as CSV records (reasons as
    ``feature (+0.532); …``).

    >>> item = {"customer_id": "c1", "score": 0.9, "band": "High", "action": "call",
    ...         "value": 80.0, "expected_loss": 72.0, "gain": 30.5, "expected_spend": 12.0,
    ...         "reasons": [{"feature": "days_since_last_event", "contribution": 0.5321}]}
    >>> row = csv_rows({"items": [item]})[0]
    >>> row["rank"], row["customer_id"], row["reasons"]
    (1, 'c1', 'days_since_last_event (+0.532)')
    """
    return [
        {
            "rank": rank,
            **{name: item[name] for name in CSV_COLUMNS[1:-1]},
            "reasons": "; ".join(
                f"{r['feature']} ({r['contribution']:+.3f})" for r in item["reasons"]
            ),
        }
        for rank, item in enumerate(document["items"], start=1)
    ]


def write_csv(path: Path, document: dict[str, Any]) -> None:
    """Write the contact list ``document`` to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(document))
