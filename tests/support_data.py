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


def online_retail_file() -> Path:
    """The real UCI Online Retail file, or skip the test saying where it was looked for."""
    if not ONLINE_RETAIL.exists():
        pytest.skip(
            f"the UCI Online Retail file is absent ({ONLINE_RETAIL}); put it there or set "
            "CHURN_ONLINE_RETAIL_FILE to run this test"
        )
    return ONLINE_RETAIL
