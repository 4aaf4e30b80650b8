"""The Online Retail importer: both column layouts, every cleaning rule, the reject file, the
report, and the real UCI file's known facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from core.events import EventValidator, Purchase, Refund, encode_event
from offline.importers.common import ImportFormatError, RejectWriter
from offline.importers.online_retail import import_online_retail
from tests.support_data import UCI_COLUMNS, online_retail_file

UCI = UCI_COLUMNS
II = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]

# (invoice, stock code, description, quantity, date, price, customer, country): one case per
# rule, in file order. Line numbers in a CSV start at 2 (the header is line 1).
ROWS = [
    (
        "536365",
        "85123A",
        "WHITE HEART ",
        "6",
        "2010-12-01 08:26:00",
        "2.55",
        "17850.0",
        "United Kingdom",
    ),  # 2 kept
    (
        "536365",
        "71053",
        "Gift Voucher Â£40.00",
        "2",
        "2010-12-01 08:26:00",
        "3.39",
        "17850.0",
        "United Kingdom",
    ),  # 3 kept
    (
        "536366",
        "22633",
        "HAND WARMER",
        "6",
        "2010-12-01 08:28:00",
        "1.85",
        "",
        "United Kingdom",
    ),  # 4 missing_customer
    (
        "",
        "22633",
        "HAND WARMER",
        "6",
        "2010-12-01 08:28:00",
        "1.85",
        "17850",
        "United Kingdom",
    ),  # 5 missing_invoice
    (
        "536367",
        "22633",
        "HAND WARMER",
        "6",
        "not a date",
        "1.85",
        "13047",
        "United Kingdom",
    ),  # 6 invalid_date
    (
        "536367",
        "22633",
        "HAND WARMER",
        "1.5",
        "2010-12-01 08:34:00",
        "1.85",
        "13047",
        "United Kingdom",
    ),  # 7 invalid_quantity
    (
        "536367",
        "22633",
        "HAND WARMER",
        "6",
        "2010-12-01 08:34:00",
        "abc",
        "13047",
        "United Kingdom",
    ),  # 8 invalid_price
    (
        "536367",
        "",
        "HAND WARMER",
        "6",
        "2010-12-01 08:34:00",
        "1.85",
        "13047",
        "United Kingdom",
    ),  # 9 missing_stock_code
    (
        "536367",
        "22633",
        "FREE SAMPLE",
        "6",
        "2010-12-01 08:34:00",
        "0",
        "13047",
        "United Kingdom",
    ),  # 10 non_positive_price
    (
        "A563186",
        "B",
        "Adjust bad debt",
        "1",
        "2011-08-12 14:51:00",
        "-11062.06",
        "13047",
        "United Kingdom",
    ),  # 11 non_positive_price
    (
        "536367",
        "22633",
        "HAND WARMER",
        "0",
        "2010-12-01 08:34:00",
        "1.85",
        "13047",
        "United Kingdom",
    ),  # 12 zero_quantity
    (
        "536367",
        "84879",
        "BIRD ORNAMENT",
        "32",
        "2010-12-01 08:34:00",
        "1.69",
        "13047",
        "United Kingdom",
    ),  # 13 kept
    (
        "536367",
        "84880",
        "BIRD ORNAMENT",
        "-2",
        "2010-12-01 08:34:00",
        "1.69",
        "13047",
        "United Kingdom",
    ),  # 14 quantity_sign
    (
        "C536379",
        "D",
        "Discount",
        "-1",
        "2010-12-01 09:41:00",
        "27.50",
        "14527",
        "United Kingdom",
    ),  # 15 kept (refund)
    (
        "C536379",
        "22556",
        "PLASTERS",
        "-12",
        "2010-12-01 09:41:00",
        "1.65",
        "14527",
        "United Kingdom",
    ),  # 16 kept (refund)
    (
        "C536379",
        "22557",
        "PLASTERS",
        "3",
        "2010-12-01 09:41:00",
        "1.65",
        "14527",
        "United Kingdom",
    ),  # 17 quantity_sign
    (
        "536400",
        "22557",
        "",
        "-4",
        "2011-07-01 10:00:00",
        "1.65",
        "14527",
        "United Kingdom",
    ),  # 18 kept (all negative: refund)
    (
        "536500",
        "22557",
        "PLASTERS",
        "5",
        "7/1/2011 10:05",
        "1.65",
        "12345",
        "France",
    ),  # 19 kept, US date, summer time
]
EXPECTED_REASONS = {
    4: "missing_customer",
    5: "missing_invoice",
    6: "invalid_date",
    7: "invalid_quantity",
    8: "invalid_price",
    9: "missing_stock_code",
    10: "non_positive_price",
    11: "non_positive_price",
    12: "zero_quantity",
    14: "quantity_sign",
    17: "quantity_sign",
}


def write_csv(tmp_path: Path, columns: list[str], rows: list[tuple[str, ...]] = ROWS) -> Path:
    path = tmp_path / "lines.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def run(path: Path, rejects: Path | None = None) -> tuple[list, object]:
    with RejectWriter(rejects) as writer:
        return import_online_retail(path, writer)


@pytest.mark.parametrize("columns", [UCI, II], ids=["uci", "online-retail-ii"])
def test_invoices_become_one_event_each(tmp_path: Path, columns: list[str]) -> None:
    events, report = run(write_csv(tmp_path, columns))
    by_id = {e.event_id: e for e in events}
    assert sorted(by_id) == [
        "online-retail:536365:17850",
        "online-retail:536367:13047",
        "online-retail:536400:14527",
        "online-retail:536500:12345",
        "online-retail:C536379:14527",
    ]
    sale = by_id["online-retail:536365:17850"]
    assert isinstance(sale, Purchase)
    assert sale.customer_id == "17850"  # the float's ".0" is gone
    assert sale.event_time == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)  # GMT in December
    assert sale.payload.amount == pytest.approx(6 * 2.55 + 2 * 3.39)
    assert sale.payload.quantity == 8
    assert [(li.sku, li.quantity, li.unit_price) for li in sale.payload.lines] == [
        ("85123A", 6, 2.55),
        ("71053", 2, 3.39),
    ]
    assert [li.description for li in sale.payload.lines] == ["WHITE HEART", "Gift Voucher £40.00"]

    cancellation = by_id["online-retail:C536379:14527"]
    assert isinstance(cancellation, Refund)
    assert cancellation.payload.amount == pytest.approx(27.50 + 12 * 1.65)  # magnitudes
    assert cancellation.payload.quantity == 13
    assert [li.quantity for li in cancellation.payload.lines] == [1, 12]

    all_negative = by_id["online-retail:536400:14527"]
    assert isinstance(all_negative, Refund) and all_negative.payload.lines[0].description == ""

    # A sale with one negative line keeps its positive line only.
    assert [li.sku for li in by_id["online-retail:536367:13047"].payload.lines] == ["84879"]
    # US-style date in British Summer Time: 10:05 local is 09:05 UTC.
    assert by_id["online-retail:536500:12345"].event_time == datetime(2011, 7, 1, 9, 5, tzinfo=UTC)

    assert [e.event_time for e in events] == sorted(e.event_time for e in events)
    assert report.rows_read == len(ROWS)
    assert report.events_by_type == {"purchase": 3, "refund": 2}
    assert report.customers == 4
    assert dict(report.rejects) == {
        reason: list(EXPECTED_REASONS.values()).count(reason)
        for reason in set(EXPECTED_REASONS.values())
    }
    assert report.facts["cancellation_invoices"] == 1
    assert report.facts["cancellation_lines"] == 3
    assert report.facts["rows_without_customer"] == 1
    assert report.facts["descriptions_repaired"] == 1
    assert report.facts["layout"] == ("UCI Online Retail" if columns is UCI else "Online Retail II")


def test_reject_file_names_line_and_reason(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    run(write_csv(tmp_path, UCI), rejects)
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in written} == EXPECTED_REASONS
    first = written[0]
    assert first["record"]["InvoiceNo"] == "536366" and first["record"]["CustomerID"] is None
    assert "customer" in first["detail"]


def test_events_follow_the_contract_and_ids_are_stable(tmp_path: Path) -> None:
    path = write_csv(tmp_path, UCI)
    first, _ = run(path)
    second, _ = run(path)
    validator = EventValidator()
    decoded = [validator.decode(encode_event(e)) for e in first]
    assert decoded == first
    assert [e.event_id for e in first] == [e.event_id for e in second]


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "InvoiceNo": ["1001", "1001", "C1002"],
            "StockCode": ["A", "B", "A"],
            "Description": ["x", None, "x"],
            "Quantity": [2, 3, -1],
            "InvoiceDate": pd.to_datetime(
                ["2011-03-01 10:00", "2011-03-01 10:01", "2011-03-02 11:00"]
            ),
            "UnitPrice": [1.5, 2.0, 1.5],
            "CustomerID": [12346.0, 12346.0, float("nan")],
            "Country": ["UK", "UK", "UK"],
        }
    )
    path = tmp_path / "lines.parquet"
    frame.to_parquet(path)
    rejects = tmp_path / "r.jsonl"
    events, report = run(path, rejects)
    assert len(events) == 1 and events[0].payload.amount == pytest.approx(9.0)
    assert events[0].event_time == datetime(2011, 3, 1, 10, 0, tzinfo=UTC)
    assert events[0].payload.lines[1].description == ""
    assert dict(report.rejects) == {"missing_customer": 1}
    assert json.loads(rejects.read_text())["line"] == 3  # the third row of the file


def test_unknown_columns_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order,sku,qty\n1,A,2\n")
    with pytest.raises(ImportFormatError) as caught:
        run(path)
    message = str(caught.value)
    assert str(path) in message
    assert "InvoiceNo" in message and "Customer ID" in message  # both layouts are named
    assert "found: order, sku, qty" in message


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("broken.parquet", b"PAR1 not really parquet", "not a readable Parquet file"),
        ("lines.xlsx", b"PK\x03\x04", "spreadsheet"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_unreadable_files_are_refused(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=problem) as caught:
        run(path)
    assert str(path) in str(caught.value) and "expected" in str(caught.value)


def test_cli_writes_events_rejects_and_a_json_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # default output paths land here
    source = write_csv(tmp_path, II)
    out, rejects = tmp_path / "events.jsonl", tmp_path / "rejects.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "import",
            "online-retail",
            str(source),
            "--out",
            str(out),
            "--rejects",
            str(rejects),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["events_written"] == 5 == len(out.read_text().splitlines())
    assert report["rows_rejected"] == len(EXPECTED_REASONS) == len(rejects.read_text().splitlines())

    bad = CliRunner().invoke(app, ["import", "online-retail", str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2 and "nope.csv" in bad.output
    assert not list(tmp_path.glob("nope*"))  # a failed import leaves no files behind


@pytest.fixture(scope="module")
def real_import() -> tuple[list, object]:
    return run(online_retail_file())


def test_real_file_agrees_with_its_known_facts(real_import: tuple[list, object]) -> None:
    events, report = real_import
    facts = report.facts
    assert report.rows_read == 541_909
    assert facts["invoices"] == 25_900
    assert facts["customers_in_file"] == 4_372
    assert facts["rows_without_customer"] == 135_080 == report.rejects["missing_customer"]
    # The data README says "9,288 cancellations": that is the number of cancellation
    # *lines*; they belong to 3,836 distinct cancellation invoices.
    assert facts["cancellation_lines"] == 9_288
    assert facts["cancellation_invoices"] == 3_836
    assert facts["rows_without_description"] == 1_454
    assert facts["countries"] == 38
    assert facts["quantity_sum"] == 5_176_450
    # Of the 4,372 customers one bought only zero-priced items, which are not sales.
    assert report.customers == len({e.customer_id for e in events}) == 4_371
    assert report.rejects["non_positive_price"] == 40
    assert report.events_by_type["refund"] == 3_654  # every cancellation invoice with a customer
    assert report.events_written == len(events) == len({e.event_id for e in events})
    assert report.first_event == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert report.last_event == datetime(2011, 12, 9, 12, 50, tzinfo=UTC)
