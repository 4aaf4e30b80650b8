"""Where the tests find the real datasets (never committed): ``../shared/data`` beside the
repository, or the file named by ``CHURN_ONLINE_RETAIL_FILE``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = Path(
    os.environ.get(
        "CHURN_ONLINE_RETAIL_FILE", REPO.parent / "shared" / "data" / "online_retail.parquet"
    )
)


# The columns of the UCI Online Retail file (the 2009-2011 "II" file names some otherwise).
UCI_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


def online_retail_file() -> Path:
    """The real UCI Online Retail file, or skip the test saying where it was looked for.

    In CI (``CI=true``) a missing file fails the test instead: there the real-data tests
    must run, and a skip would hide that they did not."""
    if not ONLINE_RETAIL.exists():
        message = (
            f"the UCI Online Retail file is absent ({ONLINE_RETAIL}); put it there or set "
            "CHURN_ONLINE_RETAIL_FILE to run this test"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: real-data tests must run)")
        pytest.skip(message)
    return ONLINE_RETAIL


def write_online_retail_csv(
    path: Path, customers: int = 300, days: int = 400, seed: int = 5
) -> Path:
    """A synthetic shop in the UCI Online Retail CSV layout: customers with their own pace
    who stop buying at some point, multi-line invoices, a few cancellations (``C`` invoices)
    and rows without a customer. Starts 2021-01-04 (UK local times)."""
    import random
    from datetime import datetime, timedelta

    import pandas as pd

    rng = random.Random(seed)
    start = datetime(2021, 1, 4, 9, 0)
    rows = []
    invoice = 500000
    for c in range(customers):
        customer = float(12000 + c)
        t = rng.uniform(0, days * 0.7)
        stop = t + rng.expovariate(1 / 160)
        gap = rng.uniform(4, 70)
        while t < min(stop, days):
            invoice += 1
            when = (start + timedelta(days=t)).strftime("%Y-%m-%d %H:%M:%S")
            for _ in range(rng.randrange(1, 7)):
                sku = f"{20000 + rng.randrange(60)}"
                quantity, price = rng.choice([1, 2, 6, 12, 24]), round(rng.uniform(0.4, 12), 2)
                rows.append(
                    (
                        str(invoice),
                        sku,
                        f"ITEM {sku} ",
                        quantity,
                        when,
                        price,
                        customer,
                        "United Kingdom",
                    )
                )
                if rng.random() < 0.03:
                    rows.append(
                        (
                            f"C{invoice}",
                            sku,
                            f"ITEM {sku}",
                            -quantity,
                            when,
                            price,
                            customer,
                            "United Kingdom",
                        )
                    )
            if rng.random() < 0.05:
                rows.append(
                    (str(invoice), "POST", "POSTAGE", 1, when, 18.0, float("nan"), "France")
                )
            t += rng.expovariate(1 / gap)
    frame = pd.DataFrame(
        rows,
        columns=UCI_COLUMNS,
    )
    frame.sort_values("InvoiceDate", kind="stable").to_csv(path, index=False)
    return path
