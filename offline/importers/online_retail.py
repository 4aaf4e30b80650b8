"""Import the UCI "Online Retail" invoice lines (CSV or Parquet) as canonical transaction events.

Two column layouts are recognised:

* **UCI Online Retail**: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
  UnitPrice, CustomerID, Country``;
* **Online Retail II**: ``Invoice, StockCode, Description, Quantity, InvoiceDate, Price,
  Customer ID, Country``.

(``Description`` and ``Country`` may be absent.) Every invoice of a customer becomes **one**
event, its lines aggregated and kept as line items:

* an invoice whose number starts with ``C`` (a cancellation), or whose lines all have a
  negative quantity, is a ``refund`` (``amount`` and ``quantity`` as positive magnitudes);
  any other invoice is a ``purchase``;
* the event time is the invoice's earliest ``InvoiceDate``, read as local time in
  ``timezone`` (the shop's, ``Europe/London`` by default) and stored as UTC; dates are
  ISO (``2011-12-09 12:50:00``) or US style (``12/9/2011 12:50``);
* the event id is ``online-retail:<invoice>:<customer>``, so importing the same file twice
  gives the same events;
* the customer id is the ``CustomerID`` without its float decoration (``17850.0`` ->
  ``17850``).

Cleaning (each rejected row is counted by reason and written to the reject file; the first
rule a row breaks is its reason):

=====================  ======================================================================
``missing_customer``   no customer id (the row cannot be attributed to anyone)
``missing_invoice``    no invoice number
``invalid_date``       the date is missing, unreadable or before 2000
``invalid_quantity``   the quantity is missing or not a whole number
``invalid_price``      the unit price is missing or not a number
``missing_stock_code`` no stock code
``invalid_identifier`` an invoice, customer or stock code longer than 128 characters
``non_positive_price`` a unit price <= 0: free items and bad-debt adjustments are not sales
``zero_quantity``      a quantity of 0
``quantity_sign``      a line whose sign disagrees with its invoice (a positive line on a
                       cancellation, a negative line on a sale)
=====================  ======================================================================

Descriptions are trimmed, mis-encoded text (``Â£``) is repaired and an empty description
is kept as ``""``. The report's ``facts`` give the file's own counts (invoices,
cancellation invoices and lines, rows without a customer, customers, countries...) so they
can be checked against what is known of the data.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.events import (
    EARLIEST_EVENT_TIME,
    Event,
    LineItem,
    Purchase,
    PurchasePayload,
    Refund,
    RefundPayload,
)
from offline.importers.common import ImportFormatError, ImportReport, RejectWriter
from offline.importers.online_retail_columns import ARROW_TEXT, normalise, text_column

FORMAT = "online-retail"
DEFAULT_TIMEZONE = "Europe/London"
MAX_IDENTIFIER = 128

# Canonical column -> the name in each layout.
LAYOUTS: dict[str, dict[str, str]] = {
    "uci": {
        "invoice": "InvoiceNo",
        "stock_code": "StockCode",
        "description": "Description",
        "quantity": "Quantity",
        "invoice_date": "InvoiceDate",
        "unit_price": "UnitPrice",
        "customer": "CustomerID",
        "country": "Country",
    },
    "ii": {
        "invoice": "Invoice",
        "stock_code": "StockCode",
        "description": "Description",
        "quantity": "Quantity",
        "invoice_date": "InvoiceDate",
        "unit_price": "Price",
        "customer": "Customer ID",
        "country": "Country",
    },
}
OPTIONAL = ("description", "country")

REASONS: dict[str, str] = {
    "missing_customer": "no customer id: the row cannot be attributed to a customer",
    "missing_invoice": "no invoice number",
    "invalid_date": "the invoice date is missing, unreadable or before 2000",
    "invalid_quantity": "the quantity is missing or not a whole number",
    "invalid_price": "the unit price is missing or not a number",
    "missing_stock_code": "no stock code",
    "invalid_identifier": "an invoice, customer or stock code is longer than 128 characters",
    "non_positive_price": "unit price <= 0: free items and adjustments are not sales",
    "zero_quantity": "a quantity of 0",
    "quantity_sign": "the quantity's sign disagrees with the invoice (cancellation or sale)",
}


def expected_columns() -> str:
    """The accepted column layouts, for error messages."""
    return " or ".join(
        f"the {'UCI' if name == 'uci' else 'Online Retail II'} columns "
        + ", ".join(layout.values())
        for name, layout in LAYOUTS.items()
    )


def read_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame and its kind, ``"parquet"`` (by suffix or magic bytes) or
    ``"csv"`` (every column read as text). Raises :class:`ImportFormatError` when it cannot
    be read."""
    path = Path(path)
    what = "a CSV or Parquet file of Online Retail invoice lines"
    if not path.exists():
        raise ImportFormatError(path, "no such file", what)
    if path.is_dir():
        raise ImportFormatError(path, "is a directory", what)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ImportFormatError(path, f"cannot be read ({exc.strerror})", what) from None
    if path.suffix.lower() in (".xlsx", ".xls"):
        raise ImportFormatError(path, "is a spreadsheet", f"{what} (save the sheet as CSV first)")
    if magic == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path, dtype_backend="pyarrow"), "parquet"
        except Exception as exc:
            raise ImportFormatError(path, f"is not a readable Parquet file ({exc})", what) from None
    for encoding in ("utf-8", "latin-1"):  # the UCI CSV is often Latin-1
        try:
            frame = pd.read_csv(
                path, dtype=ARROW_TEXT, keep_default_na=False, na_values=[""], encoding=encoding
            )
            return frame, "csv"
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise ImportFormatError(path, f"is not a readable CSV file ({exc})", what) from None
    raise ImportFormatError(path, "is not UTF-8 or Latin-1 text", what)  # pragma: no cover


def detect_layout(frame: pd.DataFrame, path: str | Path) -> str:
    """``"uci"`` or ``"ii"`` from the column names; :class:`ImportFormatError` otherwise."""
    columns = {str(c).strip() for c in frame.columns}
    best, best_missing = "", None
    for name, layout in LAYOUTS.items():
        missing = [
            column
            for key, column in layout.items()
            if key not in OPTIONAL and column not in columns
        ]
        if not missing:
            return name
        if best_missing is None or len(missing) < len(best_missing):
            best, best_missing = name, missing
    found = ", ".join(str(c) for c in frame.columns) or "none"
    raise ImportFormatError(
        path,
        f"unknown columns (found: {found}; missing for the closest layout, "
        f"{'UCI' if best == 'uci' else 'Online Retail II'}: {', '.join(best_missing or [])})",
        expected_columns(),
    )


def import_online_retail(
    path: str | Path,
    rejects: RejectWriter | None = None,
    *,
    timezone: str = DEFAULT_TIMEZONE,
) -> tuple[list[Event], ImportReport]:
    """Read ``path`` and return its events (in event-time order, then by id) and the report.

    Rejected rows go to ``rejects`` when given (see the module docstring for the rules).
    Raises :class:`ImportFormatError` for an unreadable file or unknown columns.
    """
    started = time.perf_counter()
    raw, kind = read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    layout_name = detect_layout(raw, path)
    layout = LAYOUTS[layout_name]
    # 1-based line numbers: a CSV's header is line 1; a Parquet file's rows count from 1.
    lines = np.arange(len(raw), dtype=np.int64) + (2 if kind == "csv" else 1)
    rows = normalise(raw, layout, timezone)

    reason = _reasons(rows)
    report = ImportReport(source=str(path), format=FORMAT, rows_read=len(raw))
    report.facts = _facts(raw, rows, layout_name)
    rejected = reason != ""
    if rejected.any():
        report.rejects.update(Counter(reason[rejected].tolist()))
        if rejects is not None:
            _write_rejects(rejects, raw, lines, reason, rejected)

    kept = rows.loc[~rejected]
    events = _events(kept)
    events.sort(key=lambda e: (e.event_time, e.event_id))
    report.events_by_type.update(Counter(e.type for e in events))
    report.customers = len({e.customer_id for e in events})
    if events:
        report.first_event, report.last_event = events[0].event_time, events[-1].event_time
    report.seconds = time.perf_counter() - started
    return events, report


# --- cleaning ------------------------------------------------------------------------------


def _reasons(rows: pd.DataFrame) -> np.ndarray:
    """The reject reason of each row ('' when kept): the first rule it breaks."""
    n = len(rows)
    reason = np.full(n, "", dtype=object)

    def mark(mask: np.ndarray | pd.Series, code: str) -> None:
        free = reason == ""
        reason[np.asarray(mask, dtype=bool) & free] = code

    quantity, price = rows["quantity"].to_numpy(), rows["price"].to_numpy()
    earliest = pd.Timestamp(EARLIEST_EVENT_TIME).tz_localize(None)
    mark(rows["customer"].isna(), "missing_customer")
    mark(rows["invoice"].isna(), "missing_invoice")
    mark(rows["time"].isna() | (rows["time"] < earliest), "invalid_date")
    mark(~np.isfinite(quantity) | (quantity != np.floor(quantity)), "invalid_quantity")
    mark(~np.isfinite(price), "invalid_price")
    mark(rows["stock_code"].isna(), "missing_stock_code")
    too_long = np.zeros(n, dtype=bool)
    for column in ("invoice", "customer", "stock_code"):
        too_long |= rows[column].str.len().fillna(0).to_numpy() > MAX_IDENTIFIER
    mark(too_long, "invalid_identifier")
    with np.errstate(invalid="ignore"):
        mark(price <= 0, "non_positive_price")
        mark(quantity == 0, "zero_quantity")

    # The sign rule needs each invoice's kind, judged on the rows still kept.
    alive = reason == ""
    refund = _refund_lines(rows, alive)
    with np.errstate(invalid="ignore"):
        mark(alive & (refund != (quantity < 0)), "quantity_sign")
    return reason


def _refund_lines(rows: pd.DataFrame, alive: np.ndarray) -> np.ndarray:
    """For each row: does its (invoice, customer) count as a refund? A 'C' invoice does;
    so does one whose kept lines all have a negative quantity."""
    cancellation = rows["invoice"].str.startswith("C").fillna(False).to_numpy(dtype=bool)
    negative = rows["quantity"].to_numpy() < 0
    codes = _group_codes(rows)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    alive_count = np.bincount(codes, weights=alive, minlength=n_groups)
    negative_count = np.bincount(codes, weights=alive & negative, minlength=n_groups)
    all_negative = (alive_count > 0) & (negative_count == alive_count)
    refund: np.ndarray = cancellation | all_negative[codes]
    return refund


def _group_codes(rows: pd.DataFrame) -> np.ndarray:
    """A group number per row: one group per (invoice, customer)."""
    invoice, _ = pd.factorize(rows["invoice"], use_na_sentinel=False)
    customer, customers = pd.factorize(rows["customer"], use_na_sentinel=False)
    codes, _ = pd.factorize(invoice.astype(np.int64) * (len(customers) + 1) + customer)
    result: np.ndarray = codes
    return result


def _facts(raw: pd.DataFrame, rows: pd.DataFrame, layout_name: str) -> dict[str, Any]:
    """The file's own counts, whatever the cleaning keeps (for checking against what is known
    of the data)."""
    invoices = rows["invoice"].dropna()
    is_cancellation = invoices.str.startswith("C").astype(bool)
    description_column = LAYOUTS[layout_name]["description"]
    country_column = LAYOUTS[layout_name]["country"]
    missing_description = (
        int(text_column(raw[description_column]).isna().sum())
        if description_column in raw
        else len(raw)
    )
    quantity = rows["quantity"]
    facts: dict[str, Any] = {
        "layout": "UCI Online Retail" if layout_name == "uci" else "Online Retail II",
        "invoices": int(invoices.nunique()),
        "cancellation_invoices": int(invoices[is_cancellation].nunique()),
        "cancellation_lines": int(is_cancellation.sum()),
        "rows_without_customer": int(rows["customer"].isna().sum()),
        "customers_in_file": int(rows["customer"].nunique()),
        "rows_without_description": missing_description,
        "descriptions_repaired": int(rows.attrs.get("descriptions_repaired", 0)),
        "quantity_sum": int(quantity[np.isfinite(quantity)].sum()),
    }
    if country_column in raw:
        facts["countries"] = int(text_column(raw[country_column]).nunique())
    return facts


def _write_rejects(
    writer: RejectWriter,
    raw: pd.DataFrame,
    lines: np.ndarray,
    reason: np.ndarray,
    rejected: np.ndarray,
) -> None:
    index = np.flatnonzero(rejected)
    records = raw.iloc[index].to_json(orient="records", lines=True, date_format="iso")
    codes = reason[index].tolist()
    writer.write_encoded(
        lines[index].tolist(), codes, [REASONS[c] for c in codes], records.splitlines()
    )


# --- events --------------------------------------------------------------------------------


def _events(kept: pd.DataFrame) -> list[Event]:
    """One purchase or refund per (invoice, customer), lines in file order."""
    if kept.empty:
        return []
    invoice = kept["invoice"].to_numpy(dtype=object)
    customer = kept["customer"].to_numpy(dtype=object)
    codes = _group_codes(kept)
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]

    quantity = np.abs(kept["quantity"].to_numpy()[order]).astype(np.int64)
    price = kept["price"].to_numpy()[order]
    line_amount = quantity * price
    amount = np.add.reduceat(line_amount, starts)
    items = np.add.reduceat(quantity, starts)
    times = kept["time"].to_numpy("datetime64[us]")[order].astype(np.int64)
    when = pd.to_datetime(np.minimum.reduceat(times, starts), unit="us", utc=True).to_pydatetime()
    invoices, customers = invoice[order], customer[order]
    negative = kept["quantity"].to_numpy()[order] < 0

    skus = kept["stock_code"].to_numpy(dtype=object)[order].tolist()
    descriptions = kept["description"].to_numpy(dtype=object)[order].tolist()
    quantities, prices = quantity.tolist(), price.tolist()
    events: list[Event] = []
    for group, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        number, who = str(invoices[start]), str(customers[start])
        lines = [
            LineItem(sku=skus[i], quantity=quantities[i], unit_price=prices[i],
                     description=descriptions[i])
            for i in range(start, end)
        ]  # fmt: skip
        event_id = f"online-retail:{number}:{who}"
        total = round(float(amount[group]), 2)
        # the sign rule left refunds all negative, sales all positive
        refund = bool(negative[start])
        event_type, payload_type = (
            (Refund, RefundPayload) if refund else (Purchase, PurchasePayload)
        )
        payload = payload_type(
            order_id=number, amount=total, quantity=int(items[group]), lines=lines
        )
        events.append(
            event_type(event_id=event_id, customer_id=who, event_time=when[group], payload=payload)
        )
    return events
