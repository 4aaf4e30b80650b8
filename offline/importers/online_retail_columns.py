"""Reading the Online Retail columns: typed, trimmed and repaired (see
:mod:`offline.importers.online_retail` for the layouts and the cleaning rules).

Text columns are pyarrow-backed (vectorised string functions); quantities and prices are
float64 with NaN where unreadable; times are naive UTC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

ARROW_TEXT = "string[pyarrow]"  # text columns use pyarrow's vectorised string functions
MAX_DESCRIPTION = 1024


def as_text(column: pd.Series) -> pd.Series:
    """The column as pyarrow-backed text (a cheap cast for Arrow strings)."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_large_string(dtype.pyarrow_dtype):
        array = column.array.__arrow_array__().cast(pa.string())
        return pd.Series(pd.arrays.ArrowStringArray(array), index=column.index)
    return column.astype(ARROW_TEXT)


def text_column(column: pd.Series) -> pd.Series:
    """Stripped text (pyarrow-backed), missing (``<NA>``) where absent or empty."""
    text = as_text(column).str.strip()
    return text.where(text != "")


def as_numbers(column: pd.Series) -> pd.Series:
    """The column as float64, NaN where missing or not a number."""
    return pd.to_numeric(column, errors="coerce").astype(np.float64)


def customer_ids(column: pd.Series) -> pd.Series:
    """Customer ids as text: whole numbers lose their ``.0`` (``17850.0`` -> ``17850``)."""
    numbers = as_numbers(column)
    whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.floor(numbers))
    as_int = numbers[whole].astype(np.int64).astype(str).astype(ARROW_TEXT)
    if whole.all():
        return as_int
    text = text_column(column)
    text[whole] = as_int
    return text


def utc_times(column: pd.Series, timezone: str) -> pd.Series:
    """Naive UTC timestamps (NaT where unreadable). Text is ISO or US style, local to
    ``timezone``; typed times without a zone are local to it too."""
    if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_timestamp(
        column.dtype.pyarrow_dtype
    ):
        column = pd.Series(pd.to_datetime(column.to_numpy()), index=column.index)
    if pd.api.types.is_datetime64_any_dtype(column):
        local = pd.Series(column)
    else:
        text = as_text(column).str.strip()
        local = pd.to_datetime(text, format="ISO8601", errors="coerce")
        retry = local.isna() & text.notna()
        if retry.any():
            local[retry] = pd.to_datetime(text[retry], format="%m/%d/%Y %H:%M", errors="coerce")
    if local.dt.tz is None:
        # An hour that happens twice (autumn clock change) is read as the first one.
        local = local.dt.tz_localize(
            timezone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="shift_forward"
        )
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def descriptions(column: pd.Series | None, n: int) -> tuple[pd.Series, int]:
    """Trimmed descriptions with mojibake repaired ('Â£' -> '£'), '' where missing, and how
    many were repaired."""
    if column is None:
        return pd.Series([""] * n, dtype=ARROW_TEXT), 0
    text = as_text(column).fillna("").str.strip()
    broken = text.str.contains("Ã|Â", regex=True)
    repaired = 0
    if broken.any():
        fixed = text[broken].map(_repair_mojibake).astype(ARROW_TEXT)
        repaired = int((fixed != text[broken]).sum())
        text[broken] = fixed
    return text.str.slice(0, MAX_DESCRIPTION), repaired


def _repair_mojibake(text: str) -> str:
    """UTF-8 read as Latin-1, undone; text that is not such a case is returned unchanged.

    >>> _repair_mojibake("Gift Voucher Â£40.00"), _repair_mojibake("Â plain")
    ('Gift Voucher £40.00', 'Â plain')
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def normalise(raw: pd.DataFrame, layout: dict[str, str], timezone: str) -> pd.DataFrame:
    """The columns the importer uses, typed: text (pyarrow), quantity and price (float64,
    NaN where unreadable), time (naive UTC)."""
    n = len(raw)
    description, repaired = descriptions(raw.get(layout["description"]), n)
    rows = pd.DataFrame(
        {
            "invoice": text_column(raw[layout["invoice"]]),
            "stock_code": text_column(raw[layout["stock_code"]]),
            "customer": customer_ids(raw[layout["customer"]]),
            "time": utc_times(raw[layout["invoice_date"]], timezone),
            "quantity": as_numbers(raw[layout["quantity"]]),
            "price": as_numbers(raw[layout["unit_price"]]),
            "description": description,
        }
    )
    rows.attrs["descriptions_repaired"] = repaired
    return rows
