"""Orders: how extras orders are drawn and encoded as one integer ("combo"), and how a
combo becomes line items and totals."""

from __future__ import annotations

import numpy as np

from core.events import LineItem
from offline.simulator.constants import _EXTRAS, _SUBSCRIPTION

_N_EXTRAS = len(_EXTRAS)


def _draw_combos(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random extras orders, encoded as ``(first * 2 + quantity - 1) * 6 + second + 1``."""
    first = rng.integers(0, _N_EXTRAS, size)
    quantity = 1 + (rng.random(size) < 0.2)
    second = np.where(rng.random(size) < 0.3, rng.integers(0, _N_EXTRAS, size), -1)
    return (first * 2 + quantity - 1) * (_N_EXTRAS + 1) + second + 1


def _order_lines(combo: int, subscription_price: float) -> list[LineItem]:
    """The lines of an order: ``combo`` -1 is the monthly subscription, else extras."""
    if combo < 0:
        sku, _, description = _SUBSCRIPTION
        return [
            LineItem(sku=sku, quantity=1, unit_price=subscription_price, description=description)
        ]
    rest, second = divmod(combo, _N_EXTRAS + 1)
    first, quantity = divmod(rest, 2)
    lines = []
    for index, qty in ((first, quantity + 1), (second - 1, 1)):
        if index >= 0:
            sku, price, description = _EXTRAS[index]
            lines.append(LineItem(sku=sku, quantity=qty, unit_price=price, description=description))
    return lines


def _order_totals(lines: list[LineItem]) -> tuple[float, int]:
    """The amount (GBP, rounded to pence) and the number of items of an order."""
    amount = round(sum(line.quantity * line.unit_price for line in lines), 2)
    return amount, sum(line.quantity for line in lines)
